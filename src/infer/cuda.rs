//! The GPU a `cuda` build runs image models on, when the machine has one.
//!
//! A cuda build made by `scripts/lib/cuda.sh` loads the CUDA libraries on first use, so it
//! starts where there is no driver; cudarc then panics on the first call that needs one.
//! That panic is caught here, without the panic hook's report, and becomes the reason the
//! CPU is used.

use std::sync::OnceLock;

use candle_core::Device;
use metrics::gauge;

use crate::metrics::{GPU_MEMORY_TOTAL_BYTES, GPU_MEMORY_USED_BYTES};

/// The GPU [`first_gpu`] found, for [`record_memory`].
static GPU: OnceLock<Device> = OnceLock::new();

/// Why no GPU is used.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("the CUDA libraries did not load: {0}")]
    Libraries(String),
    #[error("no usable CUDA device: {0}")]
    Device(#[from] candle_core::Error),
}

/// The first GPU (`cuda:0`), or why there is none.
pub fn first_gpu() -> Result<Device, CudaError> {
    let device = crate::panic_message::catch_quietly(|| Device::new_cuda(0))
        .map_err(CudaError::Libraries)?
        .map_err(CudaError::Device)?;
    let _ = GPU.set(device.clone());
    Ok(device)
}

/// Sets the GPU memory gauges from the driver's count (every process's use of the
/// device), when a GPU was found; the control loop calls it every few seconds.
pub fn record_memory() {
    let Some(device @ Device::Cuda(gpu)) = GPU.get() else {
        return;
    };
    let name = crate::infer::manifest::device_name(device.location());
    match gpu.cuda_stream().context().mem_get_info() {
        Ok((free, total)) => {
            gauge!(GPU_MEMORY_USED_BYTES, "device" => name.clone())
                .set(total.saturating_sub(free) as f64);
            gauge!(GPU_MEMORY_TOTAL_BYTES, "device" => name).set(total as f64);
        }
        Err(e) => tracing::debug!(error = %e, "the GPU's memory could not be read"),
    }
}
