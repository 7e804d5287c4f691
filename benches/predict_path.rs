//! Micro-benchmarks of the CPU work on the request path: decoding and validating a JSON
//! body, and the bundled model's forward pass at batch sizes 1, 8 and 32.
//!
//!   cargo bench --bench predict_path
//!
//! Results go to BENCHMARKS.md with the machine they ran on.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use infergate::http::body::decode_tabular;
use infergate::infer::demo;
use infergate::infer::model::{Batch, Model as _};

fn decode(c: &mut Criterion) {
    let body = br#"{"features":[5.1,3.5,1.4,0.2]}"#;
    let mut group = c.benchmark_group("decode_tabular");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("iris_row", |b| {
        b.iter(|| decode_tabular(black_box(body)).unwrap())
    });
    let wide = format!(r#"{{"features":[{}]}}"#, vec!["0.123456"; 1024].join(","));
    group.throughput(Throughput::Bytes(wide.len() as u64));
    group.bench_function("1024_features", |b| {
        b.iter(|| decode_tabular(black_box(wide.as_bytes())).unwrap())
    });
    group.finish();
}

fn forward(c: &mut Criterion) {
    let model = demo::load().unwrap();
    let mut group = c.benchmark_group("iris_mlp_forward");
    for rows in [1usize, 8, 32] {
        let batch = Batch {
            rows,
            features: 4,
            data: [5.1f32, 3.5, 1.4, 0.2].repeat(rows),
        };
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::from_parameter(rows), &batch, |b, batch| {
            b.iter(|| model.forward(black_box(batch)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, decode, forward);
criterion_main!(benches);
