//! The user's own image networks as ONNX, through the real binary over HTTPS: PyTorch
//! exports made by `torch.onnx.export` (scripts/models/export-torch.sh, into
//! target/onnx-torch, itself a model repository): EfficientNet-Lite0 with its real weights,
//! torchvision's ResNet-18 and timm's MobileNetV3-Small, ConvNeXt-Atto and ViT-Tiny with
//! seeded weights. Every answer is checked against ONNX Runtime's (scripts/models/
//! onnx-reference.py) on the same pixels (the gateway's own preprocessing of each photo,
//! made here by the library): probabilities within 1e-4, the top-5 the same. The
//! EfficientNet-Lite0 export answers every photo with the native candle model's top-5.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use infergate::imaging::decode::{self, DecodeLimits};
use infergate::imaging::preprocess::prepare;
use infergate::infer::manifest::Preprocess;
use support::{Gateway, Options, h1_client, h2_client, repo, runtime};

/// The exports, by their directory in target/onnx-torch.
const MODELS: [&str; 5] = [
    NATIVE_TWIN,
    "resnet18",
    "mobilenetv3-small-100",
    "convnext-atto",
    "vit-tiny-patch16-224",
];
/// The export of the bundled model's network and weights.
const NATIVE_TWIN: &str = "efficientnet-lite0-onnx";
const PHOTOS: [&str; 4] = ["bike.jpg", "cat.png", "china.jpg", "flower.jpg"];
/// How far a probability may be from ONNX Runtime's.
const TOLERANCE: f64 = 1e-4;

const LIMITS: DecodeLimits = DecodeLimits {
    max_dimension: 16_384,
    max_pixels: 40_000_000,
    max_alloc: 1 << 30,
};

/// target/onnx-torch, exported when missing or stale.
fn exports() -> PathBuf {
    let status = Command::new(repo().join("scripts/models/export-torch.sh"))
        .status()
        .expect("run scripts/models/export-torch.sh");
    assert!(status.success(), "scripts/models/export-torch.sh failed");
    repo().join("target/onnx-torch")
}

fn photo(name: &str) -> PathBuf {
    repo().join("tests/fixtures/images").join(name)
}

/// The photo as the gateway prepares it for `preprocess`.
fn pixels(name: &str, preprocess: &Preprocess) -> Vec<f32> {
    let bytes = std::fs::read(photo(name)).unwrap();
    let format = decode::sniff(&bytes).unwrap();
    prepare(
        &decode::decode(&bytes, format, &LIMITS).unwrap(),
        preprocess,
    )
}

/// ONNX Runtime's probabilities for every photo, in class order.
fn reference(version_dir: &Path) -> Vec<Vec<f64>> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(version_dir.join("manifest.json")).unwrap()).unwrap();
    let preprocess: Preprocess = serde_json::from_value(manifest["preprocess"].clone()).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    let bytes: Vec<u8> = PHOTOS
        .iter()
        .flat_map(|p| pixels(p, &preprocess))
        .flat_map(f32::to_le_bytes)
        .collect();
    std::fs::write(file.path(), bytes).unwrap();
    let out = Command::new(support::venv("onnx").join("bin/python"))
        .arg(repo().join("scripts/models/onnx-reference.py"))
        .arg(version_dir.join("model.onnx"))
        .arg("--images")
        .arg(file.path())
        .output()
        .expect("run onnx-reference.py");
    assert!(
        out.status.success(),
        "onnx-reference.py {}: {}",
        version_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_value(r["probabilities"].clone()).unwrap())
        .collect()
}

/// Checks an answer's top classes (`(class id, probability)`, best first) against ONNX
/// Runtime's probabilities: each within [`TOLERANCE`], and each ranked where ONNX Runtime
/// ranks it, but for classes it finds closer than the tolerance (a tie either may break).
fn check_top(what: &str, got: &[(usize, f64)], want: &[f64]) {
    let mut ranked: Vec<usize> = (0..want.len()).collect();
    ranked.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
    for (rank, &(class, p)) in got.iter().enumerate() {
        assert!(
            (p - want[class]).abs() <= TOLERANCE,
            "{what}: class {class} {p} vs ONNX Runtime's {}",
            want[class]
        );
        let theirs = ranked[rank];
        assert!(
            class == theirs || (want[class] - want[theirs]).abs() <= TOLERANCE,
            "{what}: rank {rank} is class {class} ({p}), ONNX Runtime's is {theirs} ({})",
            want[theirs]
        );
    }
}

/// `POST /predict?model=MODEL` with the photo as the body, computed afresh.
async fn predict(c: &reqwest::Client, gw: &Gateway, model: &str, name: &str) -> Value {
    let mime = if name.ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    let r = c
        .post(gw.url(&format!("/predict?model={model}")))
        .header("content-type", mime)
        .header("cache-control", "no-cache")
        .body(std::fs::read(photo(name)).unwrap())
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{model} {name}: {v}");
    v
}

/// The answer's top-5 as `(class id, probability)`.
fn top5(answer: &Value) -> Vec<(usize, f64)> {
    let top: Vec<(usize, f64)> = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["class_id"].as_u64().unwrap() as usize,
                p["confidence"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(top.len(), 5, "{answer}");
    top
}

/// The photos sent once as a BYTES batch by tritonclient, over HTTP and gRPC: each
/// protocol's `probabilities`, `[photos, classes]`.
fn ask_tritonclient(gw: &Gateway, model: &str) -> [(String, Vec<f64>); 2] {
    let files: Vec<PathBuf> = PHOTOS.iter().map(|p| photo(p)).collect();
    let request = json!({
        "model": model,
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [PHOTOS.len()],
                    "files": files}],
        "outputs": ["probabilities"],
    });
    let v = support::tritonclient_infer(gw, &request);
    ["http", "grpc"].map(|protocol| {
        let answer = &v[protocol]["probabilities"];
        assert_eq!(
            answer["shape"],
            json!([PHOTOS.len(), 1000]),
            "{protocol}: {v}"
        );
        let data = serde_json::from_value(answer["data"].clone()).unwrap();
        (protocol.to_owned(), data)
    })
}

#[test]
fn pytorch_exports_answer_as_onnx_runtime_over_predict_h1_h2_and_oip_http_and_grpc() {
    let root = exports();
    // The bundled EfficientNet-Lite0 (candle) beside the repository's exports.
    let gw = Gateway::start(Options::default().env("INFERGATE_REPOSITORY__PATH", root.display()));
    runtime().block_on(async {
        for model in MODELS {
            let meta = gw.get_json(&format!("/v2/models/{model}")).await;
            assert_eq!(meta["inputs"][0]["name"], "image", "{meta}");
            assert_eq!(meta["outputs"][0]["shape"], json!([-1, 1000]), "{meta}");
            let expected = reference(&root.join(model).join("1"));
            for (c, protocol) in [(h1_client(), "HTTP/1.1"), (h2_client(), "HTTP/2.0")] {
                for (photo, want) in PHOTOS.iter().zip(&expected) {
                    let answer = predict(&c, &gw, model, photo).await;
                    assert_eq!(answer["model"]["name"], model, "{answer}");
                    check_top(&format!("{model} {photo} {protocol}"), &top5(&answer), want);
                }
            }
            let mut largest = 0.0f64;
            for (protocol, data) in ask_tritonclient(&gw, model) {
                for (i, want) in expected.iter().enumerate() {
                    let row = &data[i * 1000..(i + 1) * 1000];
                    for (class, (got, want)) in row.iter().zip(want).enumerate() {
                        largest = largest.max((got - want).abs());
                        assert!(
                            (got - want).abs() <= TOLERANCE,
                            "{model} {} over {protocol}, class {class}: {got} vs {want}",
                            PHOTOS[i]
                        );
                    }
                }
            }
            let best = expected
                .iter()
                .map(|p| p.iter().copied().fold(0.0, f64::max));
            let best: Vec<String> = best.map(|p| format!("{p:.3}")).collect();
            eprintln!(
                "{model}: largest difference from ONNX Runtime {largest:.1e}; top-1 {}",
                best.join(", ")
            );
        }
        // The export of the bundled network: the native model's top-5 on every photo.
        for photo in PHOTOS {
            let c = h2_client();
            let native = predict(&c, &gw, "efficientnet-lite0", photo).await;
            let export = predict(&c, &gw, NATIVE_TWIN, photo).await;
            let labels = |v: &Value| -> Vec<String> {
                v["predictions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["label"].as_str().unwrap().to_owned())
                    .collect()
            };
            assert_eq!(labels(&export), labels(&native), "{photo}");
            for ((_, a), (_, b)) in top5(&export).iter().zip(&top5(&native)) {
                assert!((a - b).abs() <= TOLERANCE, "{photo}: {export} vs {native}");
            }
        }
    });
}
