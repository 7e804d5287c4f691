//! The GPU a `cuda` build runs image models on, when the machine has one.
//!
//! A cuda build made by `scripts/lib/cuda.sh` loads the CUDA libraries on first use, so it
//! starts where there is no driver; cudarc then panics on the first call that needs one.
//! That panic is caught here, without the panic hook's report, and becomes the reason the
//! CPU is used.

use candle_core::Device;

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
    crate::panic_message::catch_quietly(|| Device::new_cuda(0))
        .map_err(CudaError::Libraries)?
        .map_err(CudaError::Device)
}
