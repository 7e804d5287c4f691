//! Access to CPU tensor data from inside candle custom ops.

use candle_core::backend::BackendStorage as _;
use candle_core::{CpuStorage, Layout, Result, bail};

/// The f32 elements of a contiguous CPU tensor, in row-major order.
pub(crate) fn f32_data<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        bail!("{what}: expected f32 data, got {:?}", storage.dtype())
    };
    contiguous(data, layout, what)
}

/// Mutable form of [`f32_data`].
pub(crate) fn f32_data_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    what: &str,
) -> Result<&'a mut [f32]> {
    let dtype = storage.dtype();
    let CpuStorage::F32(data) = storage else {
        bail!("{what}: expected f32 data, got {dtype:?}")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!(
            "{what}: expected a contiguous tensor, got shape {:?} strides {:?}",
            layout.shape(),
            layout.stride()
        )
    };
    let len = data.len();
    match data.get_mut(start..end) {
        Some(d) => Ok(d),
        None => bail!("{what}: layout {start}..{end} outside storage of {len}"),
    }
}

fn contiguous<'a>(data: &'a [f32], layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!(
            "{what}: expected a contiguous tensor, got shape {:?} strides {:?}",
            layout.shape(),
            layout.stride()
        )
    };
    match data.get(start..end) {
        Some(d) => Ok(d),
        None => bail!(
            "{what}: layout {start}..{end} outside storage of {}",
            data.len()
        ),
    }
}
