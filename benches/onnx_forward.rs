//! Forward passes of the ONNX test exports on tract (criterion), the trees and pipelines of
//! tests/fixtures/onnx/ at batches of 1 and 64 rows (the fixture's rows, repeated), through
//! `OnnxModel::forward` as the compute threads call it: the input tensor made from the
//! batch, the run, the output copied out. tract runs on the calling thread.
//!
//! ```sh
//! cargo bench --bench onnx_forward
//! scripts/bench/onnx-vs-ort.sh      # this, and ONNX Runtime on the same files and rows
//! ```
//!
//! Criterion reports time per batch and rows per second (throughput = batch size).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use infergate::infer::model::{Batch, Model};
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

criterion_group!(benches, forward);
criterion_main!(benches);
