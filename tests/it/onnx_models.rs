//! The user's own models as ONNX files, through the real binary over HTTPS: the exports in
//! tests/fixtures/onnx/ (made by the real exporters, scripts/models/export-onnx.py) served
//! from a repository directory, every answer checked against ONNX Runtime's on the same
//! rows (scripts/models/onnx-reference.py, in the target/pyonnx venv): labels equal,
//! probabilities within 1e-5. Broken files are reported UNAVAILABLE with a reason that
//! names the problem, while the rest serve.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message as _;
use serde_json::{Value, json};

use support::{Gateway, Options, h1_client, h2_client, repo, runtime};

/// The exports served here, by their directory under tests/fixtures/onnx/.
const MODELS: [&str; 4] = [
    "sklearn-iris-logreg",
    "sklearn-iris-forest",
    "xgboost-iris",
    "lightgbm-iris",
];
/// An iris row (setosa), for the broken-files test.
const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];
/// How far a probability may be from ONNX Runtime's.
const TOLERANCE: f64 = 1e-5;

fn fixture(model: &str, file: &str) -> PathBuf {
    repo().join("tests/fixtures/onnx").join(model).join(file)
}

/// ONNX Runtime's Python.
fn python() -> PathBuf {
    support::venv("onnx").join("bin/python")
}

/// One row's answer: the label and the probability of every label.
#[derive(Debug)]
struct Expected {
    label: String,
    probabilities: HashMap<String, f64>,
}

/// ONNX Runtime's answers for the model's rows.
fn reference(model: &str) -> Vec<Expected> {
    let out = Command::new(python())
        .arg(repo().join("scripts/models/onnx-reference.py"))
        .arg(fixture(model, "model.onnx"))
        .arg(fixture(model, "inputs.json"))
        .output()
        .expect("run onnx-reference.py");
    assert!(
        out.status.success(),
        "onnx-reference.py {model}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| Expected {
            label: row["label"].as_str().unwrap().to_owned(),
            probabilities: row["probabilities"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, p)| (k.clone(), p.as_f64().unwrap()))
                .collect(),
        })
        .collect()
}

fn rows(model: &str) -> Vec<Vec<f64>> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixture(model, "inputs.json")).unwrap()).unwrap();
    serde_json::from_value(v["rows"].clone()).unwrap()
}

/// Writes `bytes` as `<root>/<name>/1/model.onnx`.
fn write_model(root: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = root.join(name).join("1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), bytes).unwrap();
    dir
}

fn with_repository(root: &Path) -> Options {
    Options::default()
        .tabular_only()
        .env("INFERGATE_REPOSITORY__PATH", root.display())
}

/// `POST /predict?model=MODEL` with `features`; `fresh` asks for it computed afresh
/// (`Cache-Control: no-cache`).
async fn predict(
    c: &reqwest::Client,
    gw: &Gateway,
    model: &str,
    features: &[f64],
    fresh: bool,
) -> reqwest::Response {
    let mut req = c
        .post(gw.url(&format!("/predict?model={model}")))
        .json(&json!({ "features": features }));
    if fresh {
        req = req.header("cache-control", "no-cache");
    }
    req.send().await.unwrap()
}

/// Checks one `/predict` answer against ONNX Runtime's for the same row.
fn check_answer(model: &str, row: usize, answer: &Value, want: &Expected) {
    assert_eq!(answer["model"]["name"], model, "{answer}");
    assert_eq!(
        answer["prediction"],
        want.label.as_str(),
        "{model} row {row}: {answer}"
    );
    let top = answer["top_k"].as_array().unwrap();
    assert_eq!(top.len(), want.probabilities.len(), "{answer}");
    for class in top {
        let label = class["label"].as_str().unwrap();
        let got = class["confidence"].as_f64().unwrap();
        let expected = want.probabilities[label];
        assert!(
            (got - expected).abs() <= TOLERANCE,
            "{model} row {row}, {label}: {got} vs ONNX Runtime's {expected}"
        );
    }
}

#[test]
fn onnx_classifiers_answer_as_onnx_runtime_over_h1_h2_and_oip() {
    let root = tempfile::tempdir().unwrap();
    for model in MODELS {
        write_model(
            root.path(),
            model,
            &std::fs::read(fixture(model, "model.onnx")).unwrap(),
        );
    }
    let gw = Gateway::start(with_repository(root.path()));
    runtime().block_on(async {
        for model in MODELS {
            let ready = h1_client()
                .get(gw.url(&format!("/v2/models/{model}/ready")))
                .send()
                .await
                .unwrap();
            let meta = gw.get_json(&format!("/v2/models/{model}")).await;
            assert_eq!(ready.status(), 200, "{meta}");
            let (rows, expected) = (rows(model), reference(model));
            assert_eq!(rows.len(), expected.len());
            for (c, protocol) in [(h1_client(), "HTTP/1.1"), (h2_client(), "HTTP/2.0")] {
                for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
                    let r = predict(&c, &gw, model, row, true).await;
                    assert_eq!(format!("{:?}", r.version()), protocol);
                    assert_eq!(r.status(), 200);
                    check_answer(model, i, &r.json().await.unwrap(), want);
                }
            }
            // All rows in one OIP request (a tabular model's input is `features`, its output
            // `probabilities`, as for the bundled one): each row its own probabilities.
            let flat: Vec<f64> = rows.iter().flatten().copied().collect();
            let body = json!({
                "inputs": [{"name": "features", "shape": [rows.len(), 4], "datatype": "FP32", "data": flat}],
            });
            let r = h2_client()
                .post(gw.url(&format!("/v2/models/{model}/infer")))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            let out = &v["outputs"][0];
            let classes = want_classes(&gw, model).await;
            assert_eq!(out["shape"], json!([rows.len(), classes.len()]), "{v}");
            let data: Vec<f64> = serde_json::from_value(out["data"].clone()).unwrap();
            for (i, want) in expected.iter().enumerate() {
                for (j, label) in classes.iter().enumerate() {
                    let got = data[i * classes.len() + j];
                    let expected = want.probabilities[label];
                    assert!(
                        (got - expected).abs() <= TOLERANCE,
                        "{model} OIP row {i}, {label}: {got} vs {expected}"
                    );
                }
            }
        }
    });
}

/// The model's labels in class-id order, from its `/predict` answer's `top_k`.
async fn want_classes(gw: &Gateway, model: &str) -> Vec<String> {
    let r = predict(&h1_client(), gw, model, &rows(model)[0], false).await;
    let v: Value = r.json().await.unwrap();
    let mut top: Vec<(u64, String)> = v["top_k"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class_id"].as_u64().unwrap(),
                c["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    top.sort();
    top.into_iter().map(|(_, label)| label).collect()
}

/// The logistic-regression export with one node's operator renamed to `op`.
fn with_operator(op: &str, domain: &str) -> Vec<u8> {
    let bytes = std::fs::read(fixture(MODELS[0], "model.onnx")).unwrap();
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let node = graph
        .node
        .iter_mut()
        .find(|n| n.op_type == "Normalizer")
        .unwrap();
    node.op_type = op.into();
    node.domain = domain.into();
    proto.encode_to_vec()
}

/// The logistic-regression export with a second graph input.
fn with_two_inputs() -> Vec<u8> {
    let bytes = std::fs::read(fixture(MODELS[0], "model.onnx")).unwrap();
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let mut second = graph.input[0].clone();
    second.name = "second".into();
    graph.input.push(second);
    proto.encode_to_vec()
}

#[test]
fn broken_onnx_files_are_unavailable_with_their_reason_while_the_rest_serve() {
    let good = std::fs::read(fixture(MODELS[1], "model.onnx")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not an ONNX model"),
        (
            "text",
            b"this is not a model\n".to_vec(),
            "not an ONNX model",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "not an ONNX model",
        ),
        (
            "unsupported",
            with_operator("Binarizer", "ai.onnx.ml"),
            "unsupported operator ai.onnx.ml.Binarizer",
        ),
        ("two-inputs", with_two_inputs(), "Tensor models"),
    ];
    let root = tempfile::tempdir().unwrap();
    for (name, bytes, _) in &cases {
        write_model(root.path(), name, bytes);
    }
    write_model(root.path(), "good", &good);
    let both = write_model(root.path(), "both", &good);
    std::fs::write(
        both.join("model.safetensors"),
        infergate::infer::demo::WEIGHTS,
    )
    .unwrap();
    let gw = Gateway::start(with_repository(root.path()));
    runtime().block_on(async {
        let expected = cases
            .iter()
            .map(|(name, _, why)| (*name, *why))
            .chain([("both", "both model.onnx and model.safetensors")]);
        for (name, why) in expected {
            let meta = gw.get_json(&format!("/v2/models/{name}")).await;
            assert_eq!(meta["state"], "UNAVAILABLE", "{name}: {meta}");
            let reason = meta["reason"].as_str().unwrap();
            assert!(
                reason.contains(why),
                "{name}: {reason:?} should say {why:?}"
            );
            let r = predict(&h1_client(), &gw, name, &SETOSA, false).await;
            assert_eq!(r.status(), 503, "{name}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "model_unavailable", "{v}");
        }
        let r = predict(&h2_client(), &gw, "good", &SETOSA, false).await;
        assert_eq!(r.status(), 200);
        // A row of the wrong width: the documented 422, not a failed run.
        let r = predict(&h1_client(), &gw, "good", &SETOSA[..2], false).await;
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "wrong_feature_count", "{v}");
    });
}
