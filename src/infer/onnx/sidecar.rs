//! The optional `manifest.json` beside a `model.onnx`: what the graph cannot say. Every
//! field may be left out; what the graph does say (names, types, shapes, a classifier's
//! labels) is read from the graph.

use serde::Deserialize;

use crate::infer::manifest::{Preprocess, Task};

/// What a sidecar manifest may say.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// The kind of model, where the graph's signature would decide otherwise.
    pub kind: Option<Kind>,
    /// `classification` or `regression`, where the graph does not say (default: a
    /// regression for a graph ending in an `ai.onnx.ml` regressor, else a classification).
    pub task: Option<Task>,
    /// Class labels in class-id order (instead of the classifier's own, or for a network
    /// that has none); for a regression, the one name of its value.
    pub labels: Option<Vec<String>>,
    /// A file of class labels, one per line, in the version directory.
    pub labels_file: Option<String>,
    /// Names of the input features, in order (default: `x0`, `x1`, …).
    pub feature_names: Option<Vec<String>>,
    /// What the classifier's output holds (default: probabilities for an `ai.onnx.ml`
    /// classifier, logits for anything else).
    pub outputs: Option<OutputMeaning>,
    /// How an upload becomes an image model's input (default: torchvision's ImageNet
    /// preprocessing at the graph's input size).
    pub preprocess: Option<Preprocess>,
}

/// The kinds an ONNX model may be served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One `[N, F]` numeric input; `/predict` takes a feature vector.
    Tabular,
    /// One `[N, 3, H, W]` float input; `/predict` takes an image.
    Image,
    /// Any other signature: the Open Inference Protocol only.
    Tensor,
}

/// What a classifier's output row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMeaning {
    /// Probabilities, used as they are.
    Probabilities,
    /// Scores, turned into probabilities by a softmax.
    Logits,
}

impl Sidecar {
    /// Parses a sidecar manifest.
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }
}
