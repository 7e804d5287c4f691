//! Clients written by others drive the Open Inference Protocol: NVIDIA's
//! tritonclient[http] and tritonclient[grpc] from PyPI (`scripts/requirements/clients.txt`,
//! `scripts/test/oip-clients.py`), over TLS (gRPC on the same port, HTTP/2), for health,
//! metadata, and infer on the tabular model (JSON and binary tensors on HTTP, the
//! classification extension) and the image model (an encoded file as BYTES), with the
//! answers `/predict` gives for the same inputs.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use support::{Gateway, Options, h1_client, keys_on, repo, runtime};

/// The clients' Python, in its venv.
fn python() -> PathBuf {
    support::venv("clients").join("bin/python")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn tritonclient_http_and_grpc_get_the_answers_predict_gives() {
    let gw = Gateway::start(Options::default());
    let image = Path::new("tests/fixtures/images/cat.png");
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("scripts/test/oip-clients.py"))
        .arg(gw.addr.to_string())
        .arg(image);
    if keys_on() {
        cmd.arg(support::SUITE_KEY);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "oip-clients.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["live"], true);
    assert_eq!(got["ready"], true);
    assert_eq!(got["iris_ready"], true);
    assert_eq!(got["server"]["name"], "infergate");
    assert_eq!(got["iris_metadata"]["inputs"][0]["name"], "features");

    let (iris, upload) = runtime().block_on(async {
        let c = h1_client();
        let iris = gw
            .post_json(&c, "/predict", &json!({"features": [6.1, 2.8, 4.7, 1.2]}))
            .await;
        (iris, gw.upload_file(&c, image).await)
    });
    for key in ["grpc_live", "grpc_ready", "grpc_iris_ready"] {
        assert_eq!(got[key], true, "{key}");
    }
    assert_eq!(got["grpc_server"]["name"], "infergate");
    assert_eq!(got["grpc_iris_metadata"]["inputs"][0]["name"], "features");
    for key in ["iris_json", "iris_binary", "grpc_iris"] {
        let probs = got[key][0].as_array().unwrap();
        assert_eq!(probs.len(), 3, "{key}");
        for entry in iris["top_k"].as_array().unwrap() {
            let id = entry["class_id"].as_u64().unwrap() as usize;
            assert!(
                close(
                    probs[id].as_f64().unwrap(),
                    entry["confidence"].as_f64().unwrap()
                ),
                "{key}: class {id}: {probs:?} vs {iris}"
            );
        }
    }
    for key in ["iris_classification", "grpc_iris_classification"] {
        let top: Vec<&str> = got[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(top.len(), 2, "{key}");
        assert_eq!(
            top[0],
            format!(
                "{:.6}:{}:{}",
                iris["confidence"].as_f64().unwrap(),
                iris["class_id"],
                iris["prediction"].as_str().unwrap()
            ),
            "{key}"
        );
    }
    for key in ["image", "grpc_image"] {
        let probs = got[key].as_array().unwrap();
        assert_eq!(probs.len(), 1000, "{key}");
        for p in upload["predictions"].as_array().unwrap() {
            let id = p["class_id"].as_u64().unwrap() as usize;
            assert!(
                close(
                    probs[id].as_f64().unwrap(),
                    p["confidence"].as_f64().unwrap()
                ),
                "{key}: class {id}"
            );
        }
    }
    for (key, status) in [
        ("unknown_model", "404"),
        ("grpc_unknown_model", "StatusCode.NOT_FOUND"),
    ] {
        assert_eq!(got[key]["status"], status, "{key}");
        let message = got[key]["message"].as_str().unwrap();
        assert!(message.contains("no-such-model"), "{key}: {message}");
    }
}
