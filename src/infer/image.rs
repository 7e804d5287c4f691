//! An image classifier: a [`cnn`](crate::infer::cnn) network with its manifest and labels.
//! Batches hold prepared `3 × H × W` tensors (see `imaging`); answers are softmax
//! probabilities over the labels.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::infer::cnn::{self, Network, Precision};
use crate::infer::manifest::{Compute, ImageManifest, InputSpec, ModelInfo, Task};
use crate::infer::model::{Batch, Model, ModelError, Outputs};

/// Where an image model runs and how many images one forward pass may take.
#[derive(Debug, Clone)]
pub struct ImageModelOptions {
    /// The device the weights live on and forward passes run on.
    pub device: Device,
    /// Most images in one forward pass.
    pub max_batch: usize,
    /// The number format the network computes in.
    pub precision: Precision,
}

impl ImageModelOptions {
    /// On the CPU, in f32, at most `max_batch` images a pass.
    pub fn cpu(max_batch: usize) -> Self {
        Self {
            device: Device::Cpu,
            max_batch,
            precision: Precision::F32,
        }
    }
}

/// A loaded image classifier.
pub struct ImageModel {
    info: ModelInfo,
    manifest: ImageManifest,
    network: Box<dyn Network>,
    device: Device,
}

impl std::fmt::Debug for ImageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageModel")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .field("architecture", &self.manifest.architecture)
            .finish_non_exhaustive()
    }
}

impl ImageModel {
    /// Loads a safetensors weights file and its manifest; the labels file is read relative
    /// to the manifest's directory.
    pub fn from_files(
        weights: &Path,
        manifest: &Path,
        opts: &ImageModelOptions,
    ) -> Result<Self, ModelError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| ModelError::Load(format!("{}: {e}", p.display())))
        };
        let manifest_json = read(manifest)?;
        let parsed = parse_manifest(&manifest_json)?;
        let labels_path = manifest
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&parsed.labels_file);
        let labels = String::from_utf8(read(&labels_path)?)
            .map_err(|_| ModelError::Load(format!("{}: not UTF-8 text", labels_path.display())))?;
        // Read, not mapped: the weights are folded and converted at load, so a mapping
        // would be copied anyway (and mapping needs `unsafe`, which this crate forbids).
        Self::from_parts(read(weights)?, parsed, &labels, opts)
    }

    /// Builds the model from safetensors bytes, manifest JSON and labels text.
    pub fn from_bytes(
        weights: Vec<u8>,
        manifest_json: &[u8],
        labels: &str,
        opts: &ImageModelOptions,
    ) -> Result<Self, ModelError> {
        Self::from_parts(weights, parse_manifest(manifest_json)?, labels, opts)
    }

    fn from_parts(
        weights: Vec<u8>,
        manifest: ImageManifest,
        labels: &str,
        opts: &ImageModelOptions,
    ) -> Result<Self, ModelError> {
        let labels: Vec<String> = labels
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if labels.len() < 2 {
            return Err(ModelError::Load(format!(
                "labels file {:?} holds {} labels; a classifier needs at least 2",
                manifest.labels_file,
                labels.len()
            )));
        }
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &opts.device)?;
        let network = cnn::build(manifest.architecture, vb, labels.len(), opts.precision)
            .map_err(|e| ModelError::Load(format!("{}: {e}", manifest.name)))?;
        let info = ModelInfo {
            name: manifest.name.as_str().into(),
            version: manifest.version.as_str().into(),
            labels,
            task: Task::Classification,
            input: InputSpec::Image(manifest.preprocess),
            takes_missing: false,
            own_names: None,
            max_batch: opts.max_batch.max(1),
            // A reduced precision answers a little differently: never from the cache
            // entries of the same model in f32.
            revision: match opts.precision {
                Precision::F32 => 0,
                p => xxhash_rust::xxh3::xxh3_64(p.name().as_bytes()),
            },
            compute: Compute {
                device: opts.device.location(),
                precision: opts.precision,
            },
        };
        Ok(Self {
            info,
            manifest,
            network,
            device: opts.device.clone(),
        })
    }

    /// The manifest the model was loaded from.
    pub fn manifest(&self) -> &ImageManifest {
        &self.manifest
    }
}

fn parse_manifest(json: &[u8]) -> Result<ImageManifest, ModelError> {
    let m: ImageManifest = serde_json::from_slice(json)
        .map_err(|e| ModelError::Load(format!("image manifest: {e}")))?;
    if m.task != Task::Classification {
        return Err(ModelError::Load(
            "image manifest: only classification is supported".to_owned(),
        ));
    }
    if let Some(problem) = m.preprocess.problem() {
        return Err(ModelError::Load(format!(
            "image manifest: preprocess: {problem}"
        )));
    }
    Ok(m)
}

impl Model for ImageModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        let expected = self.info.row_len();
        if batch.features != expected || batch.data.len() != batch.rows * expected {
            return Err(ModelError::Shape {
                expected,
                got: batch.features,
            });
        }
        let [h, w] = self.manifest.preprocess.crop;
        let x = Tensor::from_slice(
            &batch.data,
            (batch.rows, 3, h as usize, w as usize),
            &self.device,
        )?;
        let logits = self.network.forward(&x)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?
            .to_device(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(Outputs {
            rows: batch.rows,
            classes: self.info.labels.len(),
            probs,
        })
    }
}
