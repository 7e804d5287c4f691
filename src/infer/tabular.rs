//! A tabular classifier: standardize, an MLP with ReLU between layers, softmax.
//!
//! Weights are safetensors named `fc1.weight`, `fc1.bias`, … `fc{n}.*` (candle/PyTorch
//! `Linear` layout: weight is `[out, in]`); the manifest says how many hidden layers and
//! how wide, which features in which order, and the labels.

use std::path::Path;

use candle_core::{DType, Device, Module as _, Tensor};
use candle_nn::Linear;

use crate::infer::manifest::{Compute, InputSpec, Manifest, ModelInfo, Task};
use crate::infer::model::{Batch, Model, ModelError, Outputs};

/// Architecture kind this type serves.
pub const MLP_KIND: &str = "mlp";

/// A loaded MLP classifier, ready to run batches on `device`.
pub struct TabularModel {
    manifest: Manifest,
    info: ModelInfo,
    mean: Tensor,
    std: Tensor,
    layers: Vec<Linear>,
    device: Device,
}

impl std::fmt::Debug for TabularModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TabularModel")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl TabularModel {
    /// Loads a weights file and its manifest (JSON).
    pub fn from_files(weights: &Path, manifest: &Path) -> Result<Self, ModelError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| ModelError::Load(format!("{}: {e}", p.display())))
        };
        Self::from_bytes(&read(weights)?, &read(manifest)?, &Device::Cpu)
    }

    /// Builds the model from safetensors bytes and manifest JSON, checking that every
    /// layer's shape agrees with the manifest.
    pub fn from_bytes(
        weights: &[u8],
        manifest_json: &[u8],
        device: &Device,
    ) -> Result<Self, ModelError> {
        let manifest: Manifest = serde_json::from_slice(manifest_json)
            .map_err(|e| ModelError::Load(format!("manifest: {e}")))?;
        check_manifest(&manifest)?;
        let tensors = candle_core::safetensors::load_buffer(weights, device)?;
        let widths: Vec<usize> = std::iter::once(manifest.n_features())
            .chain(manifest.architecture.hidden.iter().copied())
            .chain(std::iter::once(manifest.labels.len()))
            .collect();
        let mut layers = Vec::with_capacity(widths.len() - 1);
        for (i, pair) in widths.windows(2).enumerate() {
            let (fan_in, fan_out) = (pair[0], pair[1]);
            let name = format!("fc{}", i + 1);
            let weight = take(&tensors, &format!("{name}.weight"), &[fan_out, fan_in])?;
            let bias = take(&tensors, &format!("{name}.bias"), &[fan_out])?;
            layers.push(Linear::new(weight, Some(bias)));
        }
        let extra = tensors.len() - 2 * layers.len();
        if extra != 0 {
            return Err(ModelError::Load(format!(
                "the weights hold {extra} tensor(s) the manifest's architecture does not use"
            )));
        }
        let n = manifest.n_features();
        let mean = Tensor::from_slice(&manifest.normalization.mean, (1, n), device)?;
        let std = Tensor::from_slice(&manifest.normalization.std, (1, n), device)?;
        let info = ModelInfo {
            name: manifest.name.as_str().into(),
            version: manifest.version.as_str().into(),
            labels: manifest.labels.clone(),
            task: Task::Classification,
            input: InputSpec::Features {
                names: manifest.feature_names.clone(),
            },
            takes_missing: false,
            own_names: None,
            // The batcher's own limit applies: rows are a few floats each.
            max_batch: usize::MAX,
            revision: 0,
            compute: Compute::CPU,
        };
        Ok(Self {
            manifest,
            info,
            mean,
            std,
            layers,
            device: device.clone(),
        })
    }
}

fn check_manifest(m: &Manifest) -> Result<(), ModelError> {
    let bad = |msg: String| Err(ModelError::Load(format!("manifest: {msg}")));
    let n = m.n_features();
    if m.task != Task::Classification || m.architecture.kind != MLP_KIND {
        return bad(format!(
            "a tabular model must be a classification `{MLP_KIND}`, got {:?} `{}`",
            m.task, m.architecture.kind
        ));
    }
    if n == 0 || m.labels.len() < 2 {
        return bad("needs at least one feature and two labels".to_owned());
    }
    if m.normalization.mean.len() != n || m.normalization.std.len() != n {
        return bad(format!("normalization must have {n} means and {n} stds"));
    }
    if m.normalization
        .std
        .iter()
        .any(|s| !s.is_finite() || *s <= 0.0)
        || m.normalization.mean.iter().any(|x| !x.is_finite())
    {
        return bad("normalization values must be finite, stds positive".to_owned());
    }
    Ok(())
}

fn take(
    tensors: &std::collections::HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
) -> Result<Tensor, ModelError> {
    let t = tensors
        .get(name)
        .ok_or_else(|| ModelError::Load(format!("the weights have no tensor `{name}`")))?;
    if t.dims() != shape {
        return Err(ModelError::Load(format!(
            "tensor `{name}` has shape {:?}, the manifest implies {shape:?}",
            t.dims()
        )));
    }
    Ok(t.to_dtype(DType::F32)?)
}

impl TabularModel {
    /// The manifest the model was loaded from.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

impl Model for TabularModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        let expected = self.manifest.n_features();
        if batch.features != expected || batch.data.len() != batch.rows * expected {
            return Err(ModelError::Shape {
                expected,
                got: batch.features,
            });
        }
        let x = Tensor::from_slice(&batch.data, (batch.rows, expected), &self.device)?;
        let mut h = x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        let probs = candle_nn::ops::softmax_last_dim(&h)?;
        Ok(Outputs {
            rows: batch.rows,
            classes: self.manifest.labels.len(),
            probs: probs.flatten_all()?.to_vec1::<f32>()?,
        })
    }
}
