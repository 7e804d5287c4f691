//! The bundled demo model: an MLP trained on the Iris data, embedded in the binary so that
//! `serve` needs nothing on disk. `cargo run --release --bin train-demo` retrains it and
//! rewrites the two files byte for byte.

use candle_core::Device;

use crate::infer::model::ModelError;
use crate::infer::tabular::TabularModel;

/// The training data (see `demo/README.md` for source and license).
pub const IRIS_CSV: &str = include_str!("demo/iris.csv");
/// The trained weights.
pub const WEIGHTS: &[u8] = include_bytes!("demo/model.safetensors");
/// The manifest: features, labels, normalization, held-out accuracy.
pub const MANIFEST: &str = include_str!("demo/manifest.json");

/// Loads the bundled model on the CPU.
pub fn load() -> Result<TabularModel, ModelError> {
    TabularModel::from_bytes(WEIGHTS, MANIFEST.as_bytes(), &Device::Cpu)
}
