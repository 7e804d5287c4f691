//! Convolutional image classifiers on candle: the network families an image manifest can
//! name, built from safetensors with their original tensor names.
//!
//! A [`Network`] maps a normalized `N×3×H×W` f32 batch to `N×classes` logits. Nothing here
//! knows about HTTP, images as files, or threads.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// A network family and size, as an image manifest's `architecture` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Arch {
    /// EfficientNet-Lite0 with lukemelas `efficientnet_pytorch` tensor names.
    EfficientnetLite0,
    /// torchvision ResNet (18, 34 or 50) with torchvision tensor names.
    Resnet { depth: usize },
}

/// A loaded network: normalized images in, logits out.
pub trait Network: Send + Sync {
    /// `x` is `N×3×H×W` f32 on the network's device; the result is `N×classes` logits.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}

/// Builds `arch` from `vb` (names as the architecture's original code has them), with a
/// final layer of `classes` outputs.
pub fn build(arch: Arch, vb: VarBuilder<'_>, classes: usize) -> candle_core::Result<Box<dyn Network>> {
    let _ = (arch, vb, classes);
    candle_core::bail!("not built yet")
}
