//! The CPU work an upload costs before the model: decoding (with EXIF orientation and RGB
//! conversion) and preprocessing (Pillow's resize, the centre crop, normalization), per
//! photo of the test fixtures. The forward passes are in `benches/cnn.rs`.
//!
//!   cargo bench --bench image_input
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use infergate::imaging::decode::{self, DecodeLimits};
use infergate::imaging::preprocess::prepare;
use infergate::infer::demo;
use infergate::infer::image::ImageModelOptions;
use infergate::infer::manifest::InputSpec;
use infergate::infer::model::Model as _;

const LIMITS: DecodeLimits = DecodeLimits {
    max_dimension: 16_384,
    max_pixels: 40_000_000,
    max_alloc: 1 << 30,
};

const PHOTOS: &[(&str, &[u8])] = &[
    (
        "bike.jpg 800x556",
        include_bytes!("../tests/fixtures/images/bike.jpg"),
    ),
    (
        "cat.png 451x300",
        include_bytes!("../tests/fixtures/images/cat.png"),
    ),
    (
        "lossless.webp 300x200",
        include_bytes!("../tests/fixtures/images/lossless.webp"),
    ),
];

fn image_input(c: &mut Criterion) {
    let model = demo::efficientnet_lite0::load(&ImageModelOptions::cpu(1)).unwrap();
    let InputSpec::Image(p) = model.info().input else {
        unreachable!("an image model")
    };
    let mut group = c.benchmark_group("image_input");
    group.measurement_time(Duration::from_secs(3));
    for (name, bytes) in PHOTOS {
        let format = decode::sniff(bytes).unwrap();
        group.bench_function(format!("decode {name}"), |b| {
            b.iter(|| decode::decode(black_box(bytes), format, &LIMITS).unwrap())
        });
        let rgb = decode::decode(bytes, format, &LIMITS).unwrap();
        group.bench_function(format!("preprocess {name} to 224x224"), |b| {
            b.iter(|| prepare(black_box(&rgb), &p))
        });
    }
    group.finish();
}

criterion_group!(benches, image_input);
criterion_main!(benches);
