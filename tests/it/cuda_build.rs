//! The `cuda` build where there is no GPU and no driver: it starts, says once why it runs
//! the image models on the CPU, and classifies every fixture photo exactly as the CPU
//! build does, over h1 and h2. Ignored in a plain `cargo test`: it needs that build,
//! which `scripts/test/cuda-check.sh` makes and then runs this with `--ignored`
//! (TEST_CUDA_BIN: the binary; TEST_CUDA_LIBRARY_DIR: where its libcudart is).

use std::process::Command;

use serde_json::Value;

use crate::support::photos;
use crate::support::{Gateway, Options, runtime};

const NO_GPU: &str = "no GPU: image models run on the CPU";

#[test]
#[ignore = "needs the cuda build: scripts/test/cuda-check.sh runs it"]
fn without_a_gpu_the_cuda_build_classifies_the_photos_as_the_cpu_build_with_one_warn() {
    let bin = std::env::var("TEST_CUDA_BIN")
        .expect("TEST_CUDA_BIN: the cuda build's binary (scripts/test/cuda-check.sh)");
    let libraries = std::env::var("TEST_CUDA_LIBRARY_DIR")
        .expect("TEST_CUDA_LIBRARY_DIR: where its libcudart.so.13 is");
    let mut cmd = Command::new(&bin);
    cmd.env("LD_LIBRARY_PATH", &libraries);
    let cuda = Gateway::start_with(cmd, Options::default());
    let cpu = Gateway::start(Options::default());

    let warnings: Vec<Value> = cuda
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "WARN" && v["message"] == NO_GPU)
        .collect();
    assert_eq!(warnings.len(), 1, "{}", cuda.logs());
    let reason = warnings[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("CUDA"),
        "the reason names CUDA: {}",
        warnings[0]
    );
    assert!(
        !cpu.logs().contains(NO_GPU),
        "the CPU build has no GPU to look for"
    );

    runtime().block_on(async {
        for gw in [&cuda, &cpu] {
            assert_eq!(gw.get_json("/stats").await["image_device"], "cpu");
            assert_eq!(gw.get_json("/ready").await["image_device"], "cpu");
            let meta = gw.get_json("/v2/models/efficientnet-lite0").await;
            assert_eq!(
                (&meta["device"], &meta["precision"]),
                (&"cpu".into(), &"f32".into())
            );
        }
        let want = photos::top5(&cpu).await;
        let got = photos::top5(&cuda).await;
        assert_eq!(
            got, want,
            "the cuda build on the CPU answers as the CPU build"
        );
    });
}
