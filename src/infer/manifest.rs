//! The manifest shipped beside a model's weights: what the model is and how to feed it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::infer::cnn::Precision;

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
    /// One probability per class (`labels`); an answer names the most probable ones.
    Classification,
    /// One value per row (`labels` holds its name); an answer carries the number. ONNX
    /// models only: the native architectures are classifiers.
    Regression,
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

/// What the rest of the gateway knows about a loaded model, whatever its kind: identity,
/// labels, and the input it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Name, as clients pick it and as answers, logs and cache keys carry it; shared, so
    /// that a request's answer, span and log row take it without a copy.
    pub name: Arc<str>,
    /// Version; a new version never shares cache entries with an old one.
    pub version: Arc<str>,
    /// Output class labels, indexed by class id (a regressor's: the target's name).
    pub labels: Vec<String>,
    /// What the outputs are: class probabilities, or a regressor's value.
    pub task: Task,
    /// The input the model takes.
    pub input: InputSpec,
    /// Whether a feature may be missing (JSON `null`, NaN to the model): only models that
    /// impute missing values, or route them (ONNX pipelines and forests that say so).
    pub takes_missing: bool,
    /// Its tensors' own names over the Open Inference Protocol, where declared.
    pub own_names: Option<OwnNames>,
    /// Most rows one forward pass takes.
    pub max_batch: usize,
    /// A digest of the files the model was loaded from (repository models; 0 for the
    /// configured ones): part of the cache key, so a version whose files were replaced
    /// in place never shares an entry with what it replaced.
    pub revision: u64,
    /// Where its forward passes run, and in what precision.
    pub compute: Compute,
}

/// Where a model's forward passes run and the number format they compute in, as its
/// metadata shows them. Tabular and ONNX models run on the CPU in their own types (f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    /// The device: the CPU, or a GPU by its index.
    pub device: candle_core::DeviceLocation,
    /// The precision of its weights and activations.
    pub precision: Precision,
}

impl Compute {
    /// On the CPU, in f32.
    pub const CPU: Self = Self {
        device: candle_core::DeviceLocation::Cpu,
        precision: Precision::F32,
    };

    /// The device as metadata names it: `cpu`, `cuda:0`, `metal:0`.
    pub fn device_name(&self) -> String {
        device_name(self.device)
    }
}

/// A device as `/stats`, `/ready` and model metadata name it: `cpu`, `cuda:0`, `metal:0`.
pub fn device_name(device: candle_core::DeviceLocation) -> String {
    match device {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// The two kinds of input a model can take.
/// The names a model's input and output carry over the Open Inference Protocol where its
/// configuration declares them (a Triton repository's `config.pbtxt`), instead of the
/// defaults (`features` or `image` in, `probabilities` or `prediction` out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnNames {
    pub input: String,
    /// The input's element type: a request sends this datatype.
    pub input_type: NumericType,
    pub output: String,
}

/// The element type of a numeric input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericType {
    F32,
    F64,
    I32,
    I64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A JSON feature vector.
    Features,
    /// An uploaded image.
    Image,
    /// Named tensors, over the Open Inference Protocol only.
    Tensors,
}

impl InputKind {
    /// How a client sends this kind of input, for error messages.
    pub fn how_to_send(self) -> &'static str {
        match self {
            Self::Features => "application/json {\"features\": [..]}",
            Self::Image => {
                "an image: multipart/form-data field `file` (curl -F file=@photo.jpg) or an \
                 image/jpeg, image/png or image/webp body"
            }
            Self::Tensors => {
                "its tensors by name over the Open Inference Protocol: POST \
                 /v2/models/<model>/infer (GET /v2/models/<model> lists them)"
            }
        }
    }
}

/// A tensor model's inputs and outputs, each row's part (the batch is the first
/// dimension of each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensors {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// One named tensor of a tensor model: its element type and one row's dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub elem: NumericType,
    pub dims: Vec<usize>,
}

impl TensorSpec {
    /// Values in one row of it.
    pub fn width(&self) -> usize {
        self.dims.iter().product()
    }
}

/// The input of a model.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSpec {
    /// A feature vector with these named features, in order.
    Features { names: Vec<String> },
    /// An image, prepared for the model as this says.
    Image(Preprocess),
    /// Named tensors: a batch row is every input's row, in order, and an output row every
    /// output's (as `f32`).
    Tensors(Arc<Tensors>),
}

impl ModelInfo {
    /// The kind of input the model takes.
    pub fn kind(&self) -> InputKind {
        match self.input {
            InputSpec::Features { .. } => InputKind::Features,
            InputSpec::Image(_) => InputKind::Image,
            InputSpec::Tensors(_) => InputKind::Tensors,
        }
    }

    /// Values in one batch row: the feature count, channels × height × width, or every
    /// input's row.
    pub fn row_len(&self) -> usize {
        match &self.input {
            InputSpec::Features { names } => names.len(),
            InputSpec::Image(p) => 3 * p.crop[0] as usize * p.crop[1] as usize,
            InputSpec::Tensors(t) => t.inputs.iter().map(TensorSpec::width).sum(),
        }
    }

    /// Values in one output row: one per label (a regression's one value), or every
    /// output's row.
    pub fn output_len(&self) -> usize {
        match &self.input {
            InputSpec::Tensors(t) => t.outputs.iter().map(TensorSpec::width).sum(),
            _ => self.labels.len(),
        }
    }
}

/// Pillow's resampling filters, by their Pillow names (torchvision's `InterpolationMode`
/// on PIL images uses the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
}

/// How an image becomes a model input: torchvision's `Resize(resize_shorter)`,
/// `CenterCrop(crop)`, `ToTensor` (as `pixel / scale_divisor`) and `Normalize(mean, std)`
/// on a PIL image, in that order. Output is `3 × crop[0] × crop[1]`, channels first.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Length the shorter side is resized to (the other keeps the aspect ratio, truncated).
    pub resize_shorter: u32,
    /// The resampling filter.
    pub interpolation: Interpolation,
    /// `[height, width]` of the centre crop (zero-padded when the image is smaller).
    pub crop: [u32; 2],
    /// Pixel values (0–255) are divided by this first: 255 for torchvision's `ToTensor`.
    pub scale_divisor: f32,
    /// Per-channel mean subtracted after scaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by last.
    pub std: [f32; 3],
}

impl Preprocess {
    /// torchvision's ImageNet evaluation preprocessing for a `crop` (height, width):
    /// `Resize(shorter side ⁸⁄₇ of the crop's, bilinear) → CenterCrop → ToTensor →
    /// Normalize(ImageNet mean, std)`; 256 then 224 for the usual 224 × 224.
    pub fn imagenet(crop: [u32; 2]) -> Self {
        let shorter = crop[0].min(crop[1]);
        Self {
            resize_shorter: u32::try_from(u64::from(shorter) * 8 / 7).unwrap_or(u32::MAX),
            interpolation: Interpolation::Bilinear,
            crop,
            scale_divisor: 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// What is wrong with these parameters, if anything.
    pub fn problem(&self) -> Option<String> {
        const MAX_SIDE: u32 = 4096;
        if self.resize_shorter == 0 || self.resize_shorter > MAX_SIDE {
            return Some(format!("resize_shorter must be 1..={MAX_SIDE}"));
        }
        if self.crop.iter().any(|&c| c == 0 || c > MAX_SIDE) {
            return Some(format!("crop sides must be 1..={MAX_SIDE}"));
        }
        if !(self.scale_divisor.is_finite() && self.scale_divisor > 0.0) {
            return Some("scale_divisor must be a positive number".to_owned());
        }
        if self.mean.iter().any(|m| !m.is_finite())
            || self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Some("mean must be finite and std positive".to_owned());
        }
        None
    }
}

/// The manifest shipped beside an image classifier's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// Model name.
    pub name: String,
    /// Model version.
    pub version: String,
    /// What the model computes.
    pub task: Task,
    /// The network family, with the tensor names of its original code.
    pub architecture: crate::infer::cnn::Arch,
    /// Class labels file, one per line in class-id order, relative to the manifest.
    pub labels_file: String,
    /// How an upload becomes the network's input.
    pub preprocess: Preprocess,
    /// Provenance: where the weights came from, their licence, how they were converted.
    #[serde(default)]
    pub source: std::collections::BTreeMap<String, String>,
}
