//! The manifest shipped beside a model's weights: what the model is and how to feed it.

use serde::{Deserialize, Serialize};

/// Describes one model: identity, inputs, outputs, preprocessing and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name, as clients pick it and as it appears in answers, logs and cache keys.
    pub name: String,
    /// Model version; a new version never shares cache entries with an old one.
    pub version: String,
    /// What the model computes.
    pub task: Task,
    /// Input feature names, in the order the `features` array must follow.
    pub feature_names: Vec<String>,
    /// Output class labels, indexed by class id.
    pub labels: Vec<String>,
    /// Per-feature standardization applied before the first layer: `(x - mean) / std`.
    pub normalization: Normalization,
    /// Layer layout, enough to rebuild the network from the weight names.
    pub architecture: Architecture,
    /// Where the weights came from and how good they are.
    pub training: Training,
}

/// The kind of answer a model gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Softmax over `labels`.
    Classification,
}

/// Per-feature mean and standard deviation, measured on the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// A multi-layer perceptron: `hidden` widths, ReLU between layers, softmax out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub kind: String,
    pub hidden: Vec<usize>,
}

/// Provenance and held-out quality of the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub dataset: String,
    pub source: String,
    pub license: String,
    pub seed: u64,
    pub epochs: usize,
    pub train_rows: usize,
    pub heldout_rows: usize,
    pub heldout_accuracy: f64,
}

impl Manifest {
    /// Number of input features a request must carry.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }
}
