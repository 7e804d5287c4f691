//! Forward passes of the image networks (criterion): EfficientNet-Lite0, ResNet-18 and
//! ResNet-50 with random weights on 224×224 batches of 1 and 8, on the CPU.
//!
//! Threads: candle, gemm and the custom kernels all use rayon's global pool, sized by
//! `RAYON_NUM_THREADS` (unset: one per core). Compare `RAYON_NUM_THREADS=1` and `=2`:
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo bench --bench cnn
//! ```
//!
//! Criterion reports time per batch and images per second (throughput = batch size).

use std::hint::black_box;
use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use infergate::infer::cnn::{Arch, Precision};

#[path = "support/random_network.rs"]
mod random_network;
use random_network::random_network;

fn forward(c: &mut Criterion) {
    let nets = [
        ("efficientnet_lite0", Arch::EfficientnetLite0),
        ("resnet18", Arch::Resnet { depth: 18 }),
        ("resnet50", Arch::Resnet { depth: 50 }),
    ];
    let mut group = c.benchmark_group("cnn_forward_224");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, arch) in nets {
        let net = random_network(arch, &Device::Cpu, Precision::F32);
        for batch in [1usize, 8] {
            let x = Tensor::randn(0f32, 1.0, (batch, 3, 224, 224), &Device::Cpu).expect("input");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(name, batch), &x, |b, x| {
                b.iter(|| net.forward(black_box(x)).expect("forward"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
