//! Forward passes of the ONNX test exports on tract (criterion), through
//! `OnnxModel::forward` as the compute threads call it: the input tensor made from the
//! batch, the run, the output copied out. tract runs on the calling thread (the image
//! networks: see `THREADS` below).
//! - `onnx_forward`: the trees and pipelines of tests/fixtures/onnx/ at batches of 1 and 64
//!   rows (the fixture's rows, repeated);
//! - `onnx_cnn_forward`: the PyTorch image exports of target/onnx-torch
//!   (scripts/models/export-torch.sh makes them) at batches of 1 and 8 images (seeded
//!   pseudo-random pixels: the time does not depend on them), when they are there.
//!
//! ```sh
//! cargo bench --bench onnx_forward
//! scripts/bench/onnx-vs-ort.sh      # this, and ONNX Runtime on the same files and rows
//! ```
//!
//! Criterion reports time per batch and rows per second (throughput = batch size).
//! `THREADS=N` (with `RAYON_NUM_THREADS=N`, as the script sets both) runs the image
//! networks as `compute.intra_op_threads = N` does.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use infergate::infer::model::{Batch, Model};
use infergate::infer::onnx::sidecar::Sidecar;
use infergate::infer::onnx::{LoadInputs, OnnxModel};

/// The exports timed, by their directory under tests/fixtures/onnx/.
const MODELS: [&str; 7] = [
    "sklearn-iris-logreg",
    "sklearn-iris-forest",
    "xgboost-iris",
    "lightgbm-iris",
    "sklearn-diabetes-gbr",
    "xgboost-diabetes",
    "sklearn-diabetes-pipeline",
];

/// `rows` rows of the fixture's `inputs.json`, repeated as needed; a missing value is NaN.
fn batch(dir: &Path, rows: usize) -> Batch {
    let json = std::fs::read(dir.join("inputs.json")).expect("inputs.json");
    let v: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    let table: Vec<Vec<f32>> = v["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("a row")
                .iter()
                .map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32))
                .collect()
        })
        .collect();
    let features = table[0].len();
    Batch {
        rows,
        features,
        data: table.iter().cycle().take(rows).flatten().copied().collect(),
    }
}

fn forward(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let mut group = c.benchmark_group("onnx_forward");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for name in MODELS {
        let dir = root.join(name);
        let bytes = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
        let model =
            OnnxModel::load(&bytes, name, "1", &LoadInputs::default()).expect("the export loads");
        for rows in [1usize, 64] {
            let input = batch(&dir, rows);
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new(name, rows), &input, |b, input| {
                b.iter(|| black_box(model.forward(black_box(input)).expect("a run")));
            });
        }
    }
    group.finish();
}

/// The image exports timed, by their directory under target/onnx-torch.
const CNNS: [&str; 5] = [
    "efficientnet-lite0-onnx",
    "resnet18",
    "mobilenetv3-small-100",
    "convnext-atto",
    "vit-tiny-patch16-224",
];

/// An image export with its manifest and labels file, as the repository loads it.
fn load_cnn(dir: &Path, name: &str) -> OnnxModel {
    let bytes = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
    let sidecar = Sidecar::parse(&std::fs::read(dir.join("manifest.json")).expect("manifest"))
        .expect("the manifest parses");
    let labels = sidecar.labels_file.as_ref().map(|file| {
        let text = std::fs::read_to_string(dir.join(file)).expect("the labels file");
        text.lines().map(str::to_owned).collect()
    });
    let inputs = LoadInputs {
        sidecar,
        labels_file: labels,
        declared: None,
    };
    OnnxModel::load(&bytes, name, "1", &inputs).expect("the export loads")
}

fn cnn_forward(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnx-torch");
    if !root.exists() {
        eprintln!(
            "onnx_cnn_forward: no {}; run scripts/models/export-torch.sh",
            root.display()
        );
        return;
    }
    let threads = std::env::var("THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    infergate::infer::onnx::share_intra_op_threads(threads);
    let mut group = c.benchmark_group("onnx_cnn_forward");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    for name in CNNS {
        let model = load_cnn(&root.join(name).join("1"), name);
        let features = model.info().row_len();
        for rows in [1usize, 8] {
            // A linear congruential sequence in [-2, 2): normalised pixels' range.
            let mut state = 20_261_205u32;
            let data = (0..rows * features)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
                })
                .collect();
            let input = Batch {
                rows,
                features,
                data,
            };
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new(name, rows), &input, |b, input| {
                b.iter(|| black_box(model.forward(black_box(input)).expect("a run")));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward, cnn_forward);
criterion_main!(benches);
