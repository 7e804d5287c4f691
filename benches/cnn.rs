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

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use infergate::infer::cnn::{Arch, Network, build};

/// A network with seeded random weights that keep activations O(1): the first `build`
/// registers every tensor in the map, which is then filled and read again.
fn random_network(arch: Arch) -> Box<dyn Network> {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
    build(arch, vb.clone(), 1000).expect("registering the tensors");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut uniform = move |lo: f32, hi: f32| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
    };
    {
        let data = vm.data().lock().expect("var map lock");
        let mut names: Vec<_> = data.keys().cloned().collect();
        names.sort();
        for name in names {
            let var = &data[&name];
            let dims = var.dims().to_vec();
            let (lo, hi) = if dims.len() > 1 {
                let a = (6.0 / dims[1..].iter().product::<usize>() as f32).sqrt();
                (-a, a)
            } else if name.ends_with("running_var") {
                (0.5, 2.0)
            } else if name.ends_with("weight") {
                (0.5, 1.5)
            } else {
                (-0.2, 0.2)
            };
            let n: usize = dims.iter().product();
            let values: Vec<f32> = (0..n).map(|_| uniform(lo, hi)).collect();
            var.set(&Tensor::from_vec(values, dims, &dev).expect("tensor"))
                .expect("set");
        }
    }
    build(arch, vb, 1000).expect("building the network")
}

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
        let net = random_network(arch);
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
