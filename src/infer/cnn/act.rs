//! The activations that follow a conv's bias (and residual add).

use candle_core::{Result, Tensor};

/// What a layer applies after its bias and residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    Identity,
    Relu,
    /// `min(max(x, 0), 6)` (EfficientNet-Lite).
    Relu6,
}

impl Act {
    /// Applies the activation with plain candle ops (the device-independent path).
    pub(crate) fn apply_tensor(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Act::Identity => Ok(x.clone()),
            Act::Relu => x.relu(),
            Act::Relu6 => x.clamp(0f32, 6f32),
        }
    }
}

// Scalar forms for the CPU kernels, written as comparisons rather than `f32::max` so they
// compile to plain `maxps`/`minps` (no NaN fix-up) and vectorize.
#[inline(always)]
pub(crate) fn identity(v: f32) -> f32 {
    v
}

#[inline(always)]
pub(crate) fn relu(v: f32) -> f32 {
    if v > 0.0 { v } else { 0.0 }
}

#[inline(always)]
pub(crate) fn relu6(v: f32) -> f32 {
    let v = relu(v);
    if v < 6.0 { v } else { 6.0 }
}

/// Calls `$f` with the scalar function of `$act` as a generic argument, so each kernel is
/// compiled once per activation with no branch in its inner loop.
macro_rules! with_act {
    ($act:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $act {
            $crate::infer::cnn::act::Act::Identity => $f($($arg,)* $crate::infer::cnn::act::identity),
            $crate::infer::cnn::act::Act::Relu => $f($($arg,)* $crate::infer::cnn::act::relu),
            $crate::infer::cnn::act::Act::Relu6 => $f($($arg,)* $crate::infer::cnn::act::relu6),
        }
    };
}
pub(crate) use with_act;
