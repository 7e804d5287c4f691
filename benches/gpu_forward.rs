//! Forward throughput and latency of the image networks on one device, as a Markdown table
//! (scripts/gpu-check.sh runs it on `cuda:0`): EfficientNet-Lite0 and ResNet-50 with random
//! weights (timing does not depend on them) on 224×224 batches, in each precision. Each
//! pass is timed to its logits on the host, as the compute thread waits for them.
//!
//! ```sh
//! cargo bench --features cuda --bench gpu_forward                  # cuda:0, the full grid
//! GPU_FORWARD_DEVICE=cpu GPU_FORWARD_BATCHES=1,8 GPU_FORWARD_PRECISIONS=f32 \
//!     GPU_FORWARD_SECONDS=1 cargo bench --bench gpu_forward        # a quick look on the CPU
//! ```
//!
//! GPU_FORWARD_DEVICE (`cuda`, the default, or `cpu`), GPU_FORWARD_BATCHES (1,8,32,64,128),
//! GPU_FORWARD_PRECISIONS (f32,f16), GPU_FORWARD_NETS (efficientnet_lite0,resnet50),
//! GPU_FORWARD_SECONDS per cell (3).

#![allow(clippy::print_stdout)] // the table is this program's output

use std::time::Duration;

use candle_core::{Device, Tensor};
use infergate::infer::cnn::{Arch, Precision};
// tokio's (clippy.toml bans std's for the paused-time tests); outside a runtime it reads the
// system's monotonic clock.
use tokio::time::Instant;

#[path = "support/random_network.rs"]
mod random_network;
use random_network::random_network;

fn list(var: &str, default: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn device() -> Device {
    match std::env::var("GPU_FORWARD_DEVICE").as_deref() {
        Ok("cpu") => Device::Cpu,
        _ => Device::new_cuda(0).expect("cuda:0 (GPU_FORWARD_DEVICE=cpu for the CPU)"),
    }
}

fn arch(name: &str) -> Arch {
    match name {
        "efficientnet_lite0" => Arch::EfficientnetLite0,
        "resnet18" => Arch::Resnet { depth: 18 },
        "resnet50" => Arch::Resnet { depth: 50 },
        other => panic!("GPU_FORWARD_NETS: no network {other:?}"),
    }
}

fn precision(name: &str) -> Precision {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .unwrap_or_else(|_| panic!("GPU_FORWARD_PRECISIONS: no precision {name:?}"))
}

/// The `q` quantile of sorted `xs`.
fn quantile(xs: &[Duration], q: f64) -> Duration {
    let at = ((xs.len() - 1) as f64 * q).round() as usize;
    xs[at]
}

fn main() {
    // `cargo bench` passes `--bench`. Without it (`cargo test --all-targets`), one pass of
    // the smallest cell in each precision on the CPU shows the harness works.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let device = if smoke { Device::Cpu } else { device() };
    let seconds: f64 = std::env::var("GPU_FORWARD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 0.0 } else { 3.0 });
    let batches: Vec<usize> = if smoke {
        vec![1]
    } else {
        list("GPU_FORWARD_BATCHES", "1,8,32,64,128")
            .iter()
            .map(|b| b.parse().expect("GPU_FORWARD_BATCHES: whole numbers"))
            .collect()
    };
    let (nets, precisions) = if smoke {
        (
            vec!["efficientnet_lite0".to_owned()],
            vec!["f32".to_owned(), "f16".to_owned()],
        )
    } else {
        (
            list("GPU_FORWARD_NETS", "efficientnet_lite0,resnet50"),
            list("GPU_FORWARD_PRECISIONS", "f32,f16"),
        )
    };
    println!("| network | precision | batch | images/s | latency p50 | latency p99 | passes |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for net_name in nets {
        for precision_name in &precisions {
            let net = random_network(arch(&net_name), &device, precision(precision_name));
            for &batch in &batches {
                let x = Tensor::randn(0f32, 1.0, (batch, 3, 224, 224), &Device::Cpu)
                    .and_then(|x| x.to_device(&device))
                    .expect("the input batch");
                let pass = || {
                    net.forward(&x)
                        .and_then(|y| y.to_device(&Device::Cpu))
                        .expect("forward")
                };
                // Warm-up: kernels loaded, cuBLAS's plans made, memory pooled.
                for _ in 0..if smoke { 0 } else { 3 } {
                    pass();
                }
                let least = if smoke { 1 } else { 5 };
                let mut times = Vec::new();
                let started = Instant::now();
                while times.len() < least || started.elapsed().as_secs_f64() < seconds {
                    let t = Instant::now();
                    pass();
                    times.push(t.elapsed());
                }
                let total = started.elapsed().as_secs_f64();
                times.sort();
                println!(
                    "| {net_name} | {precision_name} | {batch} | {:.0} | {:.2} ms | {:.2} ms | {} |",
                    (batch * times.len()) as f64 / total,
                    quantile(&times, 0.5).as_secs_f64() * 1e3,
                    quantile(&times, 0.99).as_secs_f64() * 1e3,
                    times.len()
                );
            }
        }
    }
}
