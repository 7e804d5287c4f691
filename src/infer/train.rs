//! Trains the bundled demo classifier, deterministically: a fixed-seed stratified split,
//! fixed-seed weight initialization, full-batch AdamW on the CPU. The same inputs give
//! the same safetensors bytes, so the shipped file can be checked by retraining
//! (`cargo run --release --bin train-demo`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module as _, Optimizer as _};

use crate::infer::manifest::{Architecture, Manifest, Normalization, Task, Training};
use crate::infer::model::{Batch, Model as _, ModelError};
use crate::infer::tabular::{MLP_KIND, TabularModel};

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The CSV is not a header plus rows of numbers ending in a label.
    #[error("CSV line {line}: {message}")]
    Csv { line: usize, message: String },
    /// A class has too few rows for the held-out split.
    #[error("class {label:?} has {rows} rows; need more than {heldout} for the held-out split")]
    TooFewRows {
        label: String,
        rows: usize,
        heldout: usize,
    },
    /// A tensor operation failed.
    #[error("tensor operation failed")]
    Tensor(#[from] candle_core::Error),
    /// The trained weights do not load back as a model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The weights could not be serialized.
    #[error("cannot serialize the weights: {0}")]
    Serialize(String),
}

/// A labelled table: feature columns, then one label column.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Feature column names, in order.
    pub feature_names: Vec<String>,
    /// Class labels, in order of first appearance.
    pub labels: Vec<String>,
    /// Each row's features.
    pub features: Vec<Vec<f32>>,
    /// Each row's class index into `labels`.
    pub classes: Vec<usize>,
}

/// What to train and how.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Model name in the manifest.
    pub name: String,
    /// Model version in the manifest.
    pub version: String,
    /// Dataset name, source URL and license, for the manifest.
    pub dataset: String,
    pub source: String,
    pub license: String,
    /// Seed for the split and the initial weights.
    pub seed: u64,
    /// Full-batch optimizer steps.
    pub epochs: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// AdamW learning rate and weight decay.
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Rows of each class held out for measuring accuracy.
    pub heldout_per_class: usize,
}

impl TrainConfig {
    /// The configuration the bundled `iris-mlp` model was trained with.
    pub fn iris() -> Self {
        Self {
            name: "iris-mlp".to_owned(),
            version: "1.0.0".to_owned(),
            dataset: "Iris (Fisher, 1936), 150 rows, 4 features, 3 species".to_owned(),
            source: "https://archive.ics.uci.edu/dataset/53/iris".to_owned(),
            license: "CC BY 4.0".to_owned(),
            seed: 1936,
            epochs: 300,
            hidden: vec![16, 16],
            learning_rate: 0.01,
            weight_decay: 0.0001,
            heldout_per_class: 10,
        }
    }
}

/// A trained model: the files to ship and how well it does on rows it never saw.
#[derive(Debug, Clone)]
pub struct Trained {
    /// safetensors bytes.
    pub weights: Vec<u8>,
    /// The manifest, including the held-out accuracy.
    pub manifest: Manifest,
    /// Pretty JSON of `manifest`, newline-terminated.
    pub manifest_json: String,
}

/// Parses a CSV with a header: numeric feature columns, then the label column.
pub fn parse_csv(text: &str) -> Result<Dataset, TrainError> {
    let err = |line: usize, message: String| TrainError::Csv { line, message };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| err(1, "empty file".to_owned()))?;
    let mut columns: Vec<String> = header.split(',').map(|c| c.trim().to_owned()).collect();
    if columns.len() < 2 {
        return Err(err(
            1,
            "need at least one feature and a label column".to_owned(),
        ));
    }
    columns.pop();
    let mut data = Dataset {
        feature_names: columns,
        labels: Vec::new(),
        features: Vec::new(),
        classes: Vec::new(),
    };
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != data.feature_names.len() + 1 {
            return Err(err(
                i + 1,
                format!("expected {} cells", data.feature_names.len() + 1),
            ));
        }
        let (label, values) = cells
            .split_last()
            .ok_or_else(|| err(i + 1, "empty".into()))?;
        let row = values
            .iter()
            .map(|v| {
                v.parse::<f32>()
                    .map_err(|e| err(i + 1, format!("{v:?}: {e}")))
            })
            .collect::<Result<Vec<f32>, _>>()?;
        let class = match data.labels.iter().position(|l| l == label) {
            Some(c) => c,
            None => {
                data.labels.push((*label).to_owned());
                data.labels.len() - 1
            }
        };
        data.features.push(row);
        data.classes.push(class);
    }
    Ok(data)
}

/// SplitMix64: a tiny, well-known PRNG, so the split and the initial weights depend
/// only on the seed (candle's CPU device cannot be seeded).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-bound, bound)`, from the top 24 bits (exact in f32).
    fn uniform(&mut self, bound: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * bound
    }

    /// Fisher–Yates shuffle.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Splits row indices into (train, held-out): `per_class` rows of each class held out,
/// picked by a seeded shuffle; both lists in ascending order.
fn stratified_split(
    data: &Dataset,
    per_class: usize,
    rng: &mut SplitMix64,
) -> Result<(Vec<usize>, Vec<usize>), TrainError> {
    let mut train = Vec::new();
    let mut heldout = Vec::new();
    for (class, label) in data.labels.iter().enumerate() {
        let mut rows: Vec<usize> = (0..data.classes.len())
            .filter(|&r| data.classes[r] == class)
            .collect();
        if rows.len() <= per_class {
            return Err(TrainError::TooFewRows {
                label: label.clone(),
                rows: rows.len(),
                heldout: per_class,
            });
        }
        rng.shuffle(&mut rows);
        heldout.extend_from_slice(&rows[..per_class]);
        train.extend_from_slice(&rows[per_class..]);
    }
    train.sort_unstable();
    heldout.sort_unstable();
    Ok((train, heldout))
}

/// Per-feature mean and population standard deviation over `rows`.
fn normalization(data: &Dataset, rows: &[usize]) -> Normalization {
    let n = data.feature_names.len();
    let count = rows.len() as f64;
    let mut mean = vec![0f64; n];
    for &r in rows {
        for (m, x) in mean.iter_mut().zip(&data.features[r]) {
            *m += f64::from(*x) / count;
        }
    }
    let mut var = vec![0f64; n];
    for &r in rows {
        for ((v, m), x) in var.iter_mut().zip(&mean).zip(&data.features[r]) {
            *v += (f64::from(*x) - m).powi(2) / count;
        }
    }
    Normalization {
        mean: mean.iter().map(|m| *m as f32).collect(),
        std: var.iter().map(|v| (v.sqrt() as f32).max(1e-6)).collect(),
    }
}

/// Trains an MLP on `data` and measures it on the held-out rows with the serving code
/// path ([`TabularModel`]).
pub fn train(data: &Dataset, cfg: &TrainConfig) -> Result<Trained, TrainError> {
    let device = Device::Cpu;
    let mut rng = SplitMix64(cfg.seed);
    let (train_rows, heldout_rows) = stratified_split(data, cfg.heldout_per_class, &mut rng)?;
    let norm = normalization(data, &train_rows);
    let n = data.feature_names.len();

    let x: Vec<f32> = train_rows
        .iter()
        .flat_map(|&r| {
            data.features[r]
                .iter()
                .zip(norm.mean.iter().zip(&norm.std))
                .map(|(x, (m, s))| (x - m) / s)
        })
        .collect();
    let x = Tensor::from_vec(x, (train_rows.len(), n), &device)?;
    let y: Vec<u32> = train_rows.iter().map(|&r| data.classes[r] as u32).collect();
    let y = Tensor::from_vec(y, train_rows.len(), &device)?;

    let widths: Vec<usize> = std::iter::once(n)
        .chain(cfg.hidden.iter().copied())
        .chain(std::iter::once(data.labels.len()))
        .collect();
    // PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
    let mut params: Vec<(String, Var)> = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w: Vec<f32> = (0..fan_in * fan_out).map(|_| rng.uniform(bound)).collect();
        let b: Vec<f32> = (0..fan_out).map(|_| rng.uniform(bound)).collect();
        let name = format!("fc{}", i + 1);
        params.push((
            format!("{name}.weight"),
            Var::from_tensor(&Tensor::from_vec(w, (fan_out, fan_in), &device)?)?,
        ));
        params.push((
            format!("{name}.bias"),
            Var::from_tensor(&Tensor::from_vec(b, fan_out, &device)?)?,
        ));
    }
    let mut opt = candle_nn::AdamW::new(
        params.iter().map(|(_, v)| v.clone()).collect(),
        candle_nn::ParamsAdamW {
            lr: cfg.learning_rate,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    for _ in 0..cfg.epochs {
        let mut h = x.clone();
        let layers = params.len() / 2;
        for l in 0..layers {
            let layer = Linear::new(
                params[2 * l].1.as_tensor().clone(),
                Some(params[2 * l + 1].1.as_tensor().clone()),
            );
            h = layer.forward(&h)?;
            if l + 1 < layers {
                h = h.relu()?;
            }
        }
        let loss = candle_nn::loss::cross_entropy(&h, &y)?;
        opt.backward_step(&loss)?;
    }

    let tensors: Vec<(String, Tensor)> = params
        .iter()
        .map(|(name, var)| {
            var.as_tensor()
                .to_dtype(DType::F32)
                .map(|t| (name.clone(), t))
        })
        .collect::<Result<_, _>>()?;
    let weights = safetensors::tensor::serialize(tensors, None::<HashMap<String, String>>)
        .map_err(|e| TrainError::Serialize(e.to_string()))?;

    let mut manifest = Manifest {
        name: cfg.name.clone(),
        version: cfg.version.clone(),
        task: Task::Classification,
        feature_names: data.feature_names.clone(),
        labels: data.labels.clone(),
        normalization: norm,
        architecture: Architecture {
            kind: MLP_KIND.to_owned(),
            hidden: cfg.hidden.clone(),
        },
        training: Training {
            dataset: cfg.dataset.clone(),
            source: cfg.source.clone(),
            license: cfg.license.clone(),
            seed: cfg.seed,
            epochs: cfg.epochs,
            train_rows: train_rows.len(),
            heldout_rows: heldout_rows.len(),
            heldout_accuracy: 0.0,
        },
    };
    let draft = to_json(&manifest)?;
    let model = TabularModel::from_bytes(&weights, draft.as_bytes(), &device)?;
    manifest.training.heldout_accuracy = accuracy(&model, data, &heldout_rows)?;
    let manifest_json = to_json(&manifest)?;
    Ok(Trained {
        weights,
        manifest,
        manifest_json,
    })
}

/// Share of `rows` whose most probable class is the labelled one.
pub fn accuracy(model: &TabularModel, data: &Dataset, rows: &[usize]) -> Result<f64, TrainError> {
    let n = data.feature_names.len();
    let batch = Batch {
        rows: rows.len(),
        features: n,
        data: rows
            .iter()
            .flat_map(|&r| data.features[r].clone())
            .collect(),
    };
    let out = model.forward(&batch)?;
    let correct = rows
        .iter()
        .enumerate()
        .filter(|(i, r)| argmax(out.row(*i)) == data.classes[**r])
        .count();
    Ok(correct as f64 / rows.len().max(1) as f64)
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

fn to_json(m: &Manifest) -> Result<String, TrainError> {
    serde_json::to_string_pretty(m)
        .map(|s| s + "\n")
        .map_err(|e| TrainError::Serialize(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_name_the_line() {
        let e = parse_csv("a,b,label\n1,2,x\n1,oops,y\n").unwrap_err();
        assert!(e.to_string().starts_with("CSV line 3"), "{e}");
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let data = parse_csv(crate::infer::demo::IRIS_CSV).unwrap();
        let (a_train, a_held) = stratified_split(&data, 10, &mut SplitMix64(7)).unwrap();
        let (b_train, b_held) = stratified_split(&data, 10, &mut SplitMix64(7)).unwrap();
        assert_eq!((a_train.len(), a_held.len()), (120, 30));
        assert_eq!((&a_train, &a_held), (&b_train, &b_held));
        for class in 0..3 {
            assert_eq!(
                a_held.iter().filter(|&&r| data.classes[r] == class).count(),
                10
            );
        }
        let (_, c_held) = stratified_split(&data, 10, &mut SplitMix64(8)).unwrap();
        assert_ne!(a_held, c_held);
    }
}
