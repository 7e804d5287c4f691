//! TEMPORARY timing probes (release: cargo test --release --lib probe -- --ignored --nocapture).
#![allow(clippy::disallowed_types)]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use super::act::Act;
use super::conv::{Conv, ConvSpec};
use super::testutil::{Rng, randomize, tensors};
use super::window::Padding;

fn time_ms(mut f: impl FnMut(), iters: usize) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / iters as f64
}

fn conv(spec: ConvSpec, rng: &mut Rng) -> Conv {
    let dev = Device::Cpu;
    let g = if spec.depthwise { 1 } else { spec.cin };
    let w = rng
        .tensor((spec.cout, g, spec.k, spec.k), -0.1, 0.1, &dev)
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = rng
        .tensor(spec.cout, -0.1, 0.1, &dev)
        .to_vec1::<f32>()
        .unwrap();
    Conv::from_folded(spec, w, b, &dev).unwrap()
}

#[test]
#[ignore]
fn probe_layers() {
    let mut rng = Rng::new(1);
    let n: usize = std::env::var("PROBE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let layers = [
        (
            "r18 stem 7x7 s2",
            ConvSpec::dense(3, 64, 7, 2, Padding::Symmetric(3), Act::Relu),
            224,
        ),
        (
            "r18 l1 3x3",
            ConvSpec::dense(64, 64, 3, 1, Padding::Symmetric(1), Act::Relu),
            56,
        ),
        (
            "r18 l2 3x3 s2",
            ConvSpec::dense(64, 128, 3, 2, Padding::Symmetric(1), Act::Relu),
            56,
        ),
        (
            "r18 l2 3x3",
            ConvSpec::dense(128, 128, 3, 1, Padding::Symmetric(1), Act::Relu),
            28,
        ),
        (
            "r18 l3 3x3",
            ConvSpec::dense(256, 256, 3, 1, Padding::Symmetric(1), Act::Relu),
            14,
        ),
        (
            "r18 l4 3x3",
            ConvSpec::dense(512, 512, 3, 1, Padding::Symmetric(1), Act::Relu),
            7,
        ),
        (
            "r18 ds l2 1x1 s2",
            ConvSpec::dense(64, 128, 1, 2, Padding::Symmetric(0), Act::Identity),
            56,
        ),
        (
            "lite stem",
            ConvSpec::dense(3, 32, 3, 2, Padding::TfSame, Act::Relu6),
            224,
        ),
        (
            "lite expand 16->96 @112",
            ConvSpec::dense(16, 96, 1, 1, Padding::TfSame, Act::Relu6),
            112,
        ),
        (
            "lite project 144->24 @56",
            ConvSpec::dense(144, 24, 1, 1, Padding::TfSame, Act::Identity),
            56,
        ),
        (
            "lite expand 24->144 @56",
            ConvSpec::dense(24, 144, 1, 1, Padding::TfSame, Act::Relu6),
            56,
        ),
        (
            "lite head 320->1280 @7",
            ConvSpec::dense(320, 1280, 1, 1, Padding::TfSame, Act::Relu6),
            7,
        ),
        (
            "lite dw 3x3 32 @112",
            ConvSpec::depthwise(32, 3, 1, Padding::TfSame, Act::Relu6),
            112,
        ),
        (
            "lite dw 3x3 s2 96 @112",
            ConvSpec::depthwise(96, 3, 2, Padding::TfSame, Act::Relu6),
            112,
        ),
        (
            "lite dw 3x3 144 @56",
            ConvSpec::depthwise(144, 3, 1, Padding::TfSame, Act::Relu6),
            56,
        ),
        (
            "lite dw 5x5 s2 144 @56",
            ConvSpec::depthwise(144, 5, 2, Padding::TfSame, Act::Relu6),
            56,
        ),
        (
            "lite dw 5x5 240 @28",
            ConvSpec::depthwise(240, 5, 1, Padding::TfSame, Act::Relu6),
            28,
        ),
        (
            "lite dw 5x5 672 @14",
            ConvSpec::depthwise(672, 5, 1, Padding::TfSame, Act::Relu6),
            14,
        ),
        (
            "lite dw 5x5 1152 @7",
            ConvSpec::depthwise(1152, 5, 1, Padding::TfSame, Act::Relu6),
            7,
        ),
    ];
    for (name, spec, hw) in layers {
        let c = conv(spec, &mut rng);
        let x = rng.tensor((n, spec.cin, hw, hw), -1.0, 1.0, &Device::Cpu);
        let iters = 20;
        let fast = time_ms(|| drop(c.forward(&x, None).unwrap()), iters);
        let candle = if spec.depthwise && spec.cin > 100 {
            f64::NAN
        } else {
            time_ms(|| drop(c.forward_candle(&x, None).unwrap()), 3)
        };
        eprintln!("{name:28} n={n} fast {fast:8.3} ms   candle {candle:8.3} ms");
    }
}

pub(crate) fn random_vm(
    f: impl Fn(&VarBuilder<'_>),
) -> (VarMap, std::collections::HashMap<String, Tensor>) {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    f(&vb);
    randomize(&vm, 1);
    let t = tensors(&vm);
    (vm, t)
}

pub(crate) fn probe_time(name: &str, mut f: impl FnMut(&Tensor), n: usize, iters: usize) {
    let x = Rng::new(9).tensor((n, 3, 224, 224), -1.0, 1.0, &Device::Cpu);
    let ms = time_ms(|| f(&x), iters);
    eprintln!(
        "{name:40} n={n}: {ms:8.2} ms/batch  {:8.2} ms/image",
        ms / n as f64
    );
}

#[test]
#[ignore]
fn probe_breakdown() {
    use super::im2col::Im2col;
    use super::window::Window;
    let mut rng = Rng::new(1);
    for (name, cin, cout, k, s, p, hw) in [
        ("stem", 3usize, 64usize, 7usize, 2usize, 3usize, 224usize),
        ("l1", 64, 64, 3, 1, 1, 56),
        ("l2", 128, 128, 3, 1, 1, 28),
        ("l4", 512, 512, 3, 1, 1, 7),
    ] {
        let x = rng.tensor((1, cin, hw, hw), -1.0, 1.0, &Device::Cpu);
        let w = rng.tensor((cout, cin * k * k), -1.0, 1.0, &Device::Cpu);
        let window = Window::new(k, s, Padding::Symmetric(p), hw, hw);
        let cols = x.apply_op1_no_bwd(&Im2col { window }).unwrap();
        let t_im2col = time_ms(|| drop(x.apply_op1_no_bwd(&Im2col { window }).unwrap()), 20);
        let t_mm = time_ms(
            || drop(w.broadcast_left(1).unwrap().matmul(&cols).unwrap()),
            20,
        );
        let c2 = cols.squeeze(0).unwrap();
        let t_mm2 = time_ms(|| drop(w.matmul(&c2).unwrap()), 20);
        // transposed problem: cols^T [P, K] x w^T [K, cout]
        let ct = c2.t().unwrap().contiguous().unwrap();
        let wt = w.t().unwrap().contiguous().unwrap();
        let t_mm3 = time_ms(|| drop(ct.matmul(&wt).unwrap()), 20);
        let t_zero = time_ms(|| drop(vec![0f32; cols.elem_count()]), 20);
        eprintln!(
            "{name:6} im2col {t_im2col:7.3}  matmul(b) {t_mm:7.3}  matmul {t_mm2:7.3}  matmul^T {t_mm3:7.3}  zero-vec {t_zero:7.3} ms"
        );
    }
}

#[test]
#[ignore]
fn probe_gemm_peak() {
    let mut rng = Rng::new(1);
    for (m, k, n) in [
        (1024usize, 1024usize, 1024usize),
        (64, 147, 12544),
        (64, 576, 3136),
        (512, 4608, 49),
        (256, 2304, 196),
    ] {
        let a = rng.tensor((m, k), -1.0, 1.0, &Device::Cpu);
        let b = rng.tensor((k, n), -1.0, 1.0, &Device::Cpu);
        let t = time_ms(|| drop(a.matmul(&b).unwrap()), 10);
        eprintln!(
            "gemm {m}x{k}x{n}: {t:7.3} ms = {:6.1} GFLOP/s",
            2.0 * (m * k * n) as f64 / t / 1e6
        );
    }
}
