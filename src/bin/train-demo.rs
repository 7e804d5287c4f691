//! Retrains the bundled Iris model and writes `src/infer/demo/model.safetensors` and
//! `manifest.json`. With the shipped seed the files come out byte for byte as committed.
//!
//! Usage: `cargo run --release --bin train-demo [-- --out DIR] [--check]`
//! `--check` writes nothing and exits 1 when the result differs from the shipped files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use infergate::infer::demo;
use infergate::infer::train::{self, TrainConfig};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("train-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let mut out = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/infer/demo"));
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().context("--out needs a directory")?.into(),
            "--check" => check = true,
            other => anyhow::bail!("unknown argument {other:?} (expected --out DIR, --check)"),
        }
    }
    let data = train::parse_csv(demo::IRIS_CSV)?;
    let cfg = TrainConfig::iris();
    let trained = train::train(&data, &cfg)?;
    let t = &trained.manifest.training;
    eprintln!(
        "trained {} {}: {} epochs on {} rows, held-out accuracy {:.4} on {} rows (seed {})",
        trained.manifest.name,
        trained.manifest.version,
        t.epochs,
        t.train_rows,
        t.heldout_accuracy,
        t.heldout_rows,
        t.seed
    );
    let same = trained.weights == demo::WEIGHTS && trained.manifest_json == demo::MANIFEST;
    if check {
        eprintln!(
            "{}",
            if same {
                "matches the shipped files"
            } else {
                "DIFFERS from the shipped files"
            }
        );
        return Ok(if same {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("model.safetensors"), &trained.weights)?;
    std::fs::write(out.join("manifest.json"), &trained.manifest_json)?;
    eprintln!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
