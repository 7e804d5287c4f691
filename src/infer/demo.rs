//! The bundled models, embedded in the binary so that `serve` needs nothing on disk:
//! an MLP trained on the Iris data (`cargo run --release --bin train-demo` retrains it and
//! rewrites its two files byte for byte), and EfficientNet-Lite0 trained on ImageNet-1k
//! (`scripts/models/convert-efficientnet-lite0.py` converts the published checkpoint; provenance
//! and licence in `demo/efficientnet-lite0/`).

use candle_core::Device;

use crate::infer::image::{ImageModel, ImageModelOptions};
use crate::infer::model::ModelError;
use crate::infer::tabular::TabularModel;

/// The training data (see `demo/README.md` for source and license).
pub const IRIS_CSV: &str = include_str!("demo/iris.csv");
/// The trained weights.
pub const WEIGHTS: &[u8] = include_bytes!("demo/model.safetensors");
/// The manifest: features, labels, normalization, held-out accuracy.
pub const MANIFEST: &str = include_str!("demo/manifest.json");

/// Loads the bundled tabular model on the CPU.
pub fn load() -> Result<TabularModel, ModelError> {
    TabularModel::from_bytes(WEIGHTS, MANIFEST.as_bytes(), &Device::Cpu)
}

/// The bundled ImageNet classifier.
pub mod efficientnet_lite0 {
    use super::*;

    /// Weights, float16 safetensors with the original (lukemelas) tensor names.
    pub const WEIGHTS: &[u8] = include_bytes!("demo/efficientnet-lite0/model.safetensors");
    /// The image manifest: architecture, preprocessing, provenance.
    pub const MANIFEST: &str = include_str!("demo/efficientnet-lite0/manifest.json");
    /// The 1000 ImageNet class names, in class-id order.
    pub const LABELS: &str = include_str!("demo/efficientnet-lite0/labels.txt");

    /// Loads the bundled EfficientNet-Lite0.
    pub fn load(opts: &ImageModelOptions) -> Result<ImageModel, ModelError> {
        ImageModel::from_bytes(WEIGHTS.to_vec(), MANIFEST.as_bytes(), LABELS, opts)
    }
}
