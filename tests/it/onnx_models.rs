//! The user's own models as ONNX files, through the real binary over HTTPS: the exports in
//! tests/fixtures/onnx/ (made by the real exporters, scripts/models/export-onnx.py) served
//! from a repository directory, every answer checked against ONNX Runtime's on the same
//! rows (scripts/models/onnx-reference.py, in the target/pyonnx venv): labels equal,
//! probabilities within 1e-5, a regressor's values within 1e-5 of their size; over
//! /predict (h1, h2) and the Open Inference Protocol (REST binary, and tritonclient's HTTP
//! and gRPC). Broken files are reported UNAVAILABLE with a reason that names the problem,
//! while the rest serve. A Triton repository (config.pbtxt) and a tensor model (two inputs,
//! two outputs) are served by their own names to tritonclient.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::disallowed_types)] // a child process lives in wall-clock time

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::{Value, json};

use support::postgres_server::PostgresServer;
use support::redis_server::RedisServer;
use support::{Gateway, Options, h1_client, h2_client, repo, runtime};

/// The classifier exports served here, by their directory under tests/fixtures/onnx/.
const MODELS: [&str; 5] = [
    "sklearn-iris-logreg",
    "sklearn-iris-forest",
    "xgboost-iris",
    "lightgbm-iris",
    PIPELINE,
];
/// The scikit-learn pipeline with imputers and one-hot encoders, on the diabetes set with
/// holes (missing values are `null` in its rows).
const PIPELINE: &str = "sklearn-diabetes-pipeline";
/// The regressor exports, fitted on scikit-learn's diabetes set (10 features).
const REGRESSORS: [&str; 2] = ["sklearn-diabetes-gbr", "xgboost-diabetes"];
/// An iris row (setosa), for the bad-models table.
const SETOSA: [Option<f64>; 4] = [Some(5.1), Some(3.5), Some(1.4), Some(0.2)];
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

/// ONNX Runtime's output for the model's rows (onnx-reference.py's `rows`).
fn reference_rows(model: &str) -> Vec<Value> {
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
    serde_json::from_value(v["rows"].clone()).unwrap()
}

/// ONNX Runtime's values for a regressor's rows.
fn reference_values(model: &str) -> Vec<f64> {
    reference_rows(model)
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect()
}

/// ONNX Runtime's answers for a classifier's rows.
fn reference(model: &str) -> Vec<Expected> {
    reference_rows(model)
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

/// The model's rows to ask, a missing value `None`.
fn rows(model: &str) -> Vec<Vec<Option<f64>>> {
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

/// A repository directory holding the exports `models` (each as version 1), and a gateway
/// serving it, started with `options` added.
fn serve_exports(
    models: &[&str],
    options: impl FnOnce(Options) -> Options,
) -> (tempfile::TempDir, Gateway) {
    let root = tempfile::tempdir().unwrap();
    for model in models {
        let bytes = std::fs::read(fixture(model, "model.onnx")).unwrap();
        write_model(root.path(), model, &bytes);
    }
    let gw = Gateway::start(options(with_repository(root.path())));
    (root, gw)
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
    features: &[Option<f64>],
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
    let (_root, gw) = serve_exports(&MODELS, |o| o);
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
            let v = infer_all(&gw, model, &rows, "probabilities").await;
            let out = &v["outputs"][0];
            let classes = want_classes(&gw, model).await;
            assert_eq!(out["shape"], json!([rows.len(), classes.len()]), "{v}");
            let data: Vec<f64> = serde_json::from_value(out["data"].clone()).unwrap();
            let mut answers = vec![("REST binary".to_owned(), data)];
            answers.extend(ask_tritonclient(&gw, model, &rows, "probabilities"));
            for (how, data) in answers {
                for (i, want) in expected.iter().enumerate() {
                    for (j, label) in classes.iter().enumerate() {
                        let got = data[i * classes.len() + j];
                        let expected = want.probabilities[label];
                        assert!(
                            (got - expected).abs() <= TOLERANCE,
                            "{model} OIP {how} row {i}, {label}: {got} vs {expected}"
                        );
                    }
                }
            }
        }
    });
}

/// Every row in one request by tritonclient over HTTP and gRPC (a missing value as NaN):
/// each protocol's `output` values, row after row.
fn ask_tritonclient(
    gw: &Gateway,
    model: &str,
    rows: &[Vec<Option<f64>>],
    output: &str,
) -> Vec<(String, Vec<f64>)> {
    let v = support::tritonclient_infer(
        gw,
        &json!({
            "model": model,
            "inputs": [{"name": "features", "datatype": "FP32",
                        "shape": [rows.len(), rows[0].len()], "data": rows}],
            "outputs": [output],
        }),
    );
    ["http", "grpc"]
        .iter()
        .map(|protocol| {
            let data = v[protocol][output]["data"].clone();
            let data = serde_json::from_value(data).unwrap_or_else(|_| panic!("{v}"));
            (format!("tritonclient {protocol}"), data)
        })
        .collect()
}

/// Every row in one OIP request over HTTP/2, as FP32 binary tensor data (which carries a
/// missing value as NaN, where JSON has no NaN); the output `output` asked for as JSON.
async fn infer_all(gw: &Gateway, model: &str, rows: &[Vec<Option<f64>>], output: &str) -> Value {
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.map_or(f32::NAN, |v| v as f32).to_le_bytes())
        .collect();
    let mut body = serde_json::to_vec(&json!({
        "inputs": [{"name": "features", "shape": [rows.len(), rows[0].len()], "datatype": "FP32",
                    "parameters": {"binary_data_size": data.len()}}],
        "outputs": [{"name": output, "parameters": {"binary_data": false}}],
    }))
    .unwrap();
    let header_len = body.len();
    body.extend_from_slice(&data);
    let r = h2_client()
        .post(gw.url(&format!("/v2/models/{model}/infer")))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", header_len.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{model}: {v}");
    v
}

/// Whether `got` is ONNX Runtime's value `want` within [`TOLERANCE`] of its size.
fn close_to(got: f64, want: f64) -> bool {
    (got - want).abs() <= TOLERANCE * want.abs().max(1.0)
}

#[test]
fn onnx_regressors_answer_their_value_as_onnx_runtime_over_h1_h2_and_oip() {
    let (_root, gw) = serve_exports(&REGRESSORS, |o| o);
    runtime().block_on(async {
        for model in REGRESSORS {
            let meta = gw.get_json(&format!("/v2/models/{model}")).await;
            assert_eq!(meta["outputs"][0]["name"], "prediction", "{meta}");
            assert_eq!(meta["outputs"][0]["shape"], json!([-1, 1]), "{meta}");
            let rows = rows(model);
            let expected = reference_values(model);
            assert_eq!(rows.len(), expected.len());
            for (c, protocol) in [(h1_client(), "HTTP/1.1"), (h2_client(), "HTTP/2.0")] {
                for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
                    let r = predict(&c, &gw, model, row, true).await;
                    assert_eq!(format!("{:?}", r.version()), protocol);
                    assert_eq!(r.status(), 200);
                    let v: Value = r.json().await.unwrap();
                    // The documented shape: the model and the number, no classes.
                    let keys: Vec<&str> =
                        v.as_object().unwrap().keys().map(String::as_str).collect();
                    let sorted = ["cached", "model", "prediction", "prediction_id"];
                    assert_eq!(keys, sorted, "{v}");
                    let got = v["prediction"].as_f64().unwrap();
                    assert!(
                        close_to(got, *want),
                        "{model} row {i}: {got} vs ONNX Runtime's {want}"
                    );
                }
            }
            let v = infer_all(&gw, model, &rows, "prediction").await;
            let out = &v["outputs"][0];
            assert_eq!(out["name"], "prediction", "{v}");
            assert_eq!(out["shape"], json!([rows.len(), 1]), "{v}");
            let data: Vec<f64> = serde_json::from_value(out["data"].clone()).unwrap();
            let mut answers = vec![("REST binary".to_owned(), data)];
            answers.extend(ask_tritonclient(&gw, model, &rows, "prediction"));
            for (how, data) in answers {
                assert_eq!(data.len(), expected.len(), "{how}");
                for (i, (got, want)) in data.iter().zip(&expected).enumerate() {
                    assert!(
                        close_to(*got, *want),
                        "{model} OIP {how} row {i}: {got} vs {want}"
                    );
                }
            }
            // A classifier's output and extension are refused, saying why.
            for output in [
                json!({"name": "probabilities"}),
                json!({"name": "prediction", "parameters": {"classification": 2}}),
            ] {
                let body = json!({
                    "inputs": [{"name": "features", "shape": [1, 10], "datatype": "FP32",
                                "data": rows[0]}],
                    "outputs": [output],
                });
                let r = h1_client()
                    .post(gw.url(&format!("/v2/models/{model}/infer")))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 422);
                // The protocol's error shape: {"error": "code: message"}.
                let v: Value = r.json().await.unwrap();
                let error = v["error"].as_str().unwrap();
                assert!(error.starts_with("invalid_tensor: "), "{v}");
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

/// The export of `model` with attribute `attr` of its node `op` changed by `edit`.
fn edited(
    model: &str,
    op: &str,
    attr: &str,
    edit: impl Fn(&mut tract_onnx::pb::AttributeProto),
) -> Vec<u8> {
    let bytes = std::fs::read(fixture(model, "model.onnx")).unwrap();
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let node = graph.node.iter_mut().find(|n| n.op_type == op).unwrap();
    edit(node.attribute.iter_mut().find(|a| a.name == attr).unwrap());
    proto.encode_to_vec()
}

/// The XGBoost regressor with its value transposed by a permutation of an axis it lacks.
fn panicking() -> Vec<u8> {
    let bytes = std::fs::read(fixture(REGRESSORS[1], "model.onnx")).unwrap();
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = proto.graph.as_mut().unwrap();
    let output = graph.output[0].name.clone();
    let last = graph
        .node
        .iter_mut()
        .find(|n| n.output.contains(&output))
        .unwrap();
    last.output = vec!["before".into()];
    graph.node.push(tract_onnx::pb::NodeProto {
        op_type: "Transpose".into(),
        input: vec!["before".into()],
        output: vec![output],
        attribute: vec![tract_onnx::pb::AttributeProto {
            name: "perm".into(),
            r#type: tract_onnx::pb::attribute_proto::AttributeType::Ints.into(),
            ints: vec![0, 5],
            ..Default::default()
        }],
        ..Default::default()
    });
    proto.encode_to_vec()
}

/// The random forest export with its first entry of `attr` set to `value`: a leaf's class
/// id past the class count, a branch back to the root (what `infer/onnx/trees.rs` refuses
/// before any walk), a feature past the input (what only a run finds).
fn with_broken_tree(attr: &str, value: i64) -> Vec<u8> {
    edited(MODELS[1], "TreeEnsembleClassifier", attr, |a| {
        a.ints[0] = value
    })
}

/// Model directories that cannot serve, with the reason each must give; one that can.
#[test]
fn bad_models_and_bad_inputs_over_h1_and_h2_while_the_rest_serve() {
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
        // Two inputs: a tensor model, but its outputs are a label and a ZipMap's maps.
        (
            "two-inputs",
            with_two_inputs(),
            "a tensor model (inputs \"input\": float [N, 4]; \"second\": float [N, 4]) \
             answers numbers; no output holds them",
        ),
        (
            "leaf-past-classes",
            with_broken_tree("class_ids", 9),
            "class id 9 of 3",
        ),
        (
            "cyclic-tree",
            with_broken_tree("nodes_truenodeids", 0),
            "has a cycle through node 0",
        ),
        // The graph declares 4 features and compares the 10th: found by the warm-up run.
        (
            "feature-past-input",
            with_broken_tree("nodes_featureids", 9),
            "warm-up inference failed",
        ),
        // tract indexes the input's axes by the permutation unchecked: caught, named.
        (
            "panics-tract",
            panicking(),
            "tract panicked: index out of bounds",
        ),
        // tract's shape rules loop up to `axis + rank` unchecked: the fuzzer's find, which
        // used to hold the repository thread for ever.
        (
            "layernorm-axis",
            std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fuzz/corpus/onnx_model/regress-layernorm-axis-below-rank"),
            )
            .unwrap(),
            "axis -5 is outside [-2, 2) for an input of rank 2",
        ),
    ];
    // Triton layouts whose config.pbtxt contradicts the graph, or is not a configuration.
    let triton: [(&str, &str, &str); 3] = [
        (
            "triton-contradicts",
            "max_batch_size: 8\ninput [ { name: \"input\" data_type: TYPE_INT64 dims: [ 4 ] } ]\n\
             output [ { name: \"output_label\" data_type: TYPE_INT64 dims: [ 1 ] } ]",
            "config.pbtxt: input \"input\" is declared int64, the graph's is float",
        ),
        (
            "triton-wrong-dims",
            "max_batch_size: 8\ninput [ { name: \"input\" data_type: TYPE_FP32 dims: [ 5 ] } ]\n\
             output [ { name: \"output_label\" data_type: TYPE_INT64 dims: [ 1 ] } ]",
            "input \"input\" is declared [-1, 5]",
        ),
        (
            "triton-not-a-config",
            "max_batch_size: 8\nbatching_window: 3",
            "config.pbtxt: field 'batching_window' not found",
        ),
    ];
    let root = tempfile::tempdir().unwrap();
    for (name, bytes, _) in &cases {
        write_model(root.path(), name, bytes);
    }
    for (name, config, _) in triton {
        write_model(root.path(), name, &good);
        std::fs::write(root.path().join(name).join("config.pbtxt"), config).unwrap();
    }
    write_model(root.path(), "good", &good);
    let both = write_model(root.path(), "both", &good);
    std::fs::write(
        both.join("model.safetensors"),
        infergate::infer::demo::WEIGHTS,
    )
    .unwrap();
    // Version 2 of a classifier is a regressor: the two do not serve side by side. At start
    // the newest loads first; the other is refused (on a reload, the one that came last).
    write_model(root.path(), "mixed", &good);
    let mixed_2 = root.path().join("mixed/2");
    std::fs::create_dir_all(&mixed_2).unwrap();
    std::fs::copy(
        fixture(REGRESSORS[0], "model.onnx"),
        mixed_2.join("model.onnx"),
    )
    .unwrap();
    std::fs::write(
        root.path().join("mixed/model.toml"),
        "[version_policy]\nall = true\n",
    )
    .unwrap();
    // Every leaf weight NaN: any row computes no number.
    write_model(
        root.path(),
        "nan-output",
        &edited(
            REGRESSORS[0],
            "TreeEnsembleRegressor",
            "target_weights",
            |a| {
                a.floats.iter_mut().for_each(|w| *w = f32::NAN);
            },
        ),
    );
    let gw = Gateway::start(with_repository(root.path()));
    runtime().block_on(async {
        let expected = cases
            .iter()
            .map(|(name, _, why)| (*name, *why))
            .chain(triton.iter().map(|(name, _, why)| (*name, *why)))
            .chain([("both", "both model.onnx and model.safetensors")]);
        for (name, why) in expected {
            let meta = gw.get_json(&format!("/v2/models/{name}")).await;
            assert_eq!(meta["state"], "UNAVAILABLE", "{name}: {meta}");
            let reason = meta["reason"].as_str().unwrap();
            assert!(
                reason.contains(why),
                "{name}: {reason:?} should say {why:?}"
            );
            for c in [h1_client(), h2_client()] {
                let r = predict(&c, &gw, name, &SETOSA, false).await;
                assert_eq!(r.status(), 503, "{name}");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "model_unavailable", "{v}");
            }
        }
        let index = gw
            .post_json(&h1_client(), "/v2/repository/index", &json!({}))
            .await;
        let mixed = |version: &str| {
            index
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == "mixed" && e["version"] == version)
                .unwrap()
                .clone()
        };
        assert_eq!(mixed("2")["state"], "READY", "{index}");
        assert_eq!(mixed("1")["state"], "UNAVAILABLE", "{index}");
        let reason = mixed("1")["reason"].as_str().unwrap().to_owned();
        assert!(reason.contains("must take the same input and answer alike"), "{reason}");
        let row = rows(REGRESSORS[0])[0].clone();
        for c in [h1_client(), h2_client()] {
            let r = predict(&c, &gw, "good", &SETOSA, false).await;
            assert_eq!(r.status(), 200);
            let r = predict(&c, &gw, "mixed", &row, false).await;
            assert_eq!(r.status(), 200);
            // The documented 422s, not a failed run: a row of the wrong width, a model
            // that computes no number.
            let r = predict(&c, &gw, "good", &SETOSA[..2], false).await;
            assert_eq!(r.status(), 422);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "wrong_feature_count", "{v}");
            let r = predict(&c, &gw, "nan-output", &row, false).await;
            assert_eq!(r.status(), 422);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "non_finite_output", "{v}");
            // OIP: data its datatype does not hold, a datatype the input does not take
            // (BYTES are images: 415, as for any tabular model).
            for (datatype, data, status, code) in [
                ("BYTES", json!(["5.1,3.5,1.4,0.2"]), 415, "wrong_input_kind"),
                ("BOOL", json!([5.1, 3.5, 1.4, 0.2]), 422, "invalid_tensor"),
            ] {
                let shape = if datatype == "BYTES" { json!([1]) } else { json!([1, 4]) };
                let body = json!({
                    "inputs": [{"name": "features", "shape": shape, "datatype": datatype, "data": data}],
                });
                let r = c
                    .post(gw.url("/v2/models/good/infer"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), status, "{datatype}");
                let v: Value = r.json().await.unwrap();
                let error = v["error"].as_str().unwrap();
                assert!(error.starts_with(&format!("{code}: ")), "{datatype}: {v}");
            }
        }
    });
}

#[test]
fn missing_values_where_a_model_takes_them_and_an_unseen_category_refused_for_its_row_only() {
    // Concurrent rows gather into one batch (one run of the graph).
    let (_root, gw) = serve_exports(&[PIPELINE, MODELS[0]], |o| {
        o.env("INFERGATE_BATCH__MAX_SIZE", 32)
            .env("INFERGATE_BATCH__MAX_WAIT_MS", 20)
    });
    let (rows, expected) = (rows(PIPELINE), reference(PIPELINE));
    assert!(
        rows.iter().flatten().any(Option::is_none),
        "the rows have holes"
    );
    runtime().block_on(async {
        // A missing value where the model imputes none: the 422 a null always had.
        let r = predict(
            &h1_client(),
            &gw,
            MODELS[0],
            &[Some(5.1), None, Some(1.4), Some(0.2)],
            false,
        )
        .await;
        assert_eq!(r.status(), 422);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "non_numeric_feature", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("takes no missing values"),
            "{v}"
        );

        // Age in decades (column 0) of 9: a code the encoder never saw (scikit-learn's
        // default, handle_unknown="error"; ONNX Runtime fails such a run too). Each such
        // row is refused alone; the rows batched beside it are answered.
        for (c, protocol) in [(h1_client(), "HTTP/1.1"), (h2_client(), "HTTP/2.0")] {
            let requests = rows.iter().take(12).enumerate().map(|(i, row)| {
                let mut row = row.clone();
                let unseen = i % 3 == 0;
                if unseen {
                    row[0] = Some(9.0);
                }
                let (c, gw) = (&c, &gw);
                async move { (i, unseen, predict(c, gw, PIPELINE, &row, true).await) }
            });
            for (i, unseen, r) in futures_util::future::join_all(requests).await {
                assert_eq!(format!("{:?}", r.version()), protocol);
                let status = r.status();
                let v: Value = r.json().await.unwrap();
                if unseen {
                    assert_eq!(status, 422, "row {i}: {v}");
                    assert_eq!(v["error"]["code"], "unseen_category", "row {i}: {v}");
                    let message = v["error"]["message"].as_str().unwrap();
                    assert!(
                        message.contains("the value 9 is not one of the categories"),
                        "{v}"
                    );
                } else {
                    assert_eq!(status, 200, "row {i}: {v}");
                    check_answer(PIPELINE, i, &v, &expected[i]);
                }
            }
        }
        let stats = gw.get_json("/stats").await;
        assert!(
            stats["batches"]["max_size"].as_u64().unwrap() > 1,
            "{stats}"
        );
    });
}

/// `POST /predict` of `row` to `model`; the status, `X-Cache` and the answer.
async fn ask(
    c: &reqwest::Client,
    gw: &Gateway,
    model: &str,
    row: &[Option<f64>],
) -> (u16, String, Value) {
    let r = predict(c, gw, model, row, false).await;
    let status = r.status().as_u16();
    let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    (status, cache, r.json().await.unwrap())
}

#[test]
fn an_onnx_regressor_through_batching_coalescing_both_caches_and_the_log() {
    let redis = RedisServer::start();
    let pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let model = REGRESSORS[1];
    let options = |o: Options| {
        o.env("INFERGATE_REDIS__URL", redis.url())
            .logging_to(&pg.url(), spool.path())
            // Every answer is counted: a busy machine's adaptive shedding is not tested here.
            .env("INFERGATE_ADMISSION__ADAPTIVE", false)
            .env("INFERGATE_BATCH__MAX_SIZE", 16)
            .env("INFERGATE_BATCH__MAX_WAIT_MS", 20)
    };
    let (root, mut gw) = serve_exports(&[model], options);
    let rows = rows(model);
    let expected = reference_values(model);
    let redis_ok = |gw: &Gateway| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while runtime().block_on(gw.get_json("/ready"))["checks"]["redis"] != "ok" {
            assert!(Instant::now() < deadline, "Redis never ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    redis_ok(&gw);
    let mut answered = 0;
    runtime().block_on(async {
        let c = h2_client();
        // Distinct rows at once: batched, each its own value.
        let distinct = futures_util::future::join_all(
            rows.iter().take(32).map(|row| ask(&c, &gw, model, row)),
        )
        .await;
        for (i, (status, cache, v)) in distinct.iter().enumerate() {
            assert_eq!((*status, cache.as_str()), (200, "miss"), "row {i}: {v}");
            let got = v["prediction"].as_f64().unwrap();
            assert!(
                close_to(got, expected[i]),
                "row {i}: {got} vs {}",
                expected[i]
            );
        }
        answered += distinct.len();
        let stats = gw.get_json("/stats").await;
        assert!(
            stats["batches"]["max_size"].as_u64().unwrap() > 1,
            "{stats}"
        );
        // One row asked 16 times at once: computed once, the others share it.
        let same =
            futures_util::future::join_all((0..16).map(|_| ask(&c, &gw, model, &rows[40]))).await;
        let caches: Vec<&str> = same.iter().map(|(_, cache, _)| cache.as_str()).collect();
        assert_eq!(
            caches.iter().filter(|c| **c == "miss").count(),
            1,
            "{caches:?}"
        );
        assert!(
            caches
                .iter()
                .all(|c| ["miss", "coalesced", "hit-l1"].contains(c)),
            "{caches:?}"
        );
        assert!(
            same.iter()
                .all(|(s, _, v)| *s == 200 && v["prediction"] == same[0].2["prediction"])
        );
        answered += same.len();
        // A repeat: the in-process cache.
        let (status, cache, _) = ask(&c, &gw, model, &rows[0]).await;
        assert_eq!((status, cache.as_str()), (200, "hit-l1"));
        answered += 1;
    });
    gw.stop_cleanly(Duration::from_secs(30));
    // A new process: the answer is in Redis.
    let gw = Gateway::start(options(with_repository(root.path())));
    redis_ok(&gw);
    runtime().block_on(async {
        let (status, cache, v) = ask(&h1_client(), &gw, model, &rows[0]).await;
        assert_eq!((status, cache.as_str()), (200, "hit-l2"), "{v}");
        assert!(close_to(v["prediction"].as_f64().unwrap(), expected[0]));
    });
    answered += 1;
    // Every answer is one log row: the value as text, no confidence, no class.
    let logged = format!("predictions WHERE model_name = '{model}'");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pg.count(&logged) < answered as i64 {
        assert!(
            Instant::now() < deadline,
            "{} of {answered} rows",
            pg.count(&logged)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pg.count(&logged), answered as i64);
    let numbers =
        format!("{logged} AND confidence IS NULL AND top_class IS NULL AND prediction::float8 > 0");
    assert_eq!(pg.count(&numbers), answered as i64);
}

/// xgboost-iris's configuration as Triton's documentation writes one for an ONNX classifier.
const IRIS_CONFIG: &str = r#"
name: "iris"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
]
output [
  {
    name: "probabilities"
    data_type: TYPE_FP32
    dims: [ 3 ]
    label_filename: "iris_labels.txt"
  }
]
instance_group [ { count: 1, kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
"#;

/// xgboost-diabetes's, unbatched in Triton's terms (the dims are the whole shape).
const DIABETES_CONFIG: &str = r#"
backend: "onnxruntime"
max_batch_size: 0
input [
  {
    name: "input"
    data_type: TYPE_FP32
    dims: [ -1, 10 ]
  }
]
output [
  {
    name: "variable"
    data_type: TYPE_FP32
    dims: [ -1, 1 ]
  }
]
"#;

/// The metadata tritonclient gets over `protocol`: each tensor's name, datatype and shape.
fn tensors(v: &Value, protocol: &str, side: &str) -> Vec<(String, String, Vec<i64>)> {
    v[protocol]["metadata"][side]
        .as_array()
        .unwrap_or_else(|| panic!("{protocol} {side}: {v}"))
        .iter()
        .map(|t| {
            // gRPC's JSON carries the dims as strings (int64 in proto3 JSON).
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().or_else(|| d.as_str()?.parse().ok()).unwrap())
                .collect();
            let name = t["name"].as_str().unwrap().to_owned();
            (name, t["datatype"].as_str().unwrap().to_owned(), shape)
        })
        .collect()
}

#[test]
fn a_triton_repository_serves_its_models_by_their_own_names_to_tritonclient() {
    let root = tempfile::tempdir().unwrap();
    let iris = "xgboost-iris";
    let diabetes = REGRESSORS[1];
    for (name, model, config) in [
        ("iris", iris, IRIS_CONFIG),
        ("diabetes", diabetes, DIABETES_CONFIG),
    ] {
        write_model(
            root.path(),
            name,
            &std::fs::read(fixture(model, "model.onnx")).unwrap(),
        );
        std::fs::write(root.path().join(name).join("config.pbtxt"), config).unwrap();
    }
    let labels = ["setosa", "versicolor", "virginica"];
    std::fs::write(root.path().join("iris/iris_labels.txt"), labels.join("\n")).unwrap();
    let gw = Gateway::start(with_repository(root.path()));

    let (rows, expected) = (rows(iris), reference(iris));
    let flat: Vec<f64> = rows.iter().flatten().map(|v| v.unwrap()).collect();
    let ask = |datatype: &str| {
        support::tritonclient_infer(
            &gw,
            &json!({
                "model": "iris",
                "inputs": [{"name": "input", "datatype": datatype, "shape": [rows.len(), 4],
                            "data": flat}],
                "outputs": ["probabilities"],
            }),
        )
    };
    let v = ask("FP32");
    for protocol in ["http", "grpc"] {
        // Triton's conventions: the graph's names, the declared datatype, the batch -1.
        assert_eq!(
            tensors(&v, protocol, "inputs"),
            [("input".into(), "FP32".into(), vec![-1, 4])],
            "{protocol}"
        );
        assert_eq!(
            tensors(&v, protocol, "outputs"),
            [("probabilities".into(), "FP32".into(), vec![-1, 3])],
            "{protocol}"
        );
        let out = &v[protocol]["probabilities"];
        assert_eq!(out["shape"], json!([rows.len(), 3]), "{protocol}: {v}");
        let data: Vec<f64> = serde_json::from_value(out["data"].clone()).unwrap();
        for (i, want) in expected.iter().enumerate() {
            for class in 0..3 {
                let (got, want) = (data[i * 3 + class], want.probabilities[&class.to_string()]);
                assert!(
                    (got - want).abs() <= TOLERANCE,
                    "{protocol} row {i} class {class}: {got} vs ONNX Runtime's {want}"
                );
            }
        }
    }
    // The declared datatype only, as Triton: FP64 is refused, saying which it takes.
    let v = ask("FP64");
    for protocol in ["http", "grpc"] {
        let error = v[protocol]["error"].as_str().unwrap_or_default();
        assert!(error.contains("is FP32, not FP64"), "{protocol}: {v}");
    }
    // /predict answers with the label file's labels.
    runtime().block_on(async {
        for (c, protocol) in [(h1_client(), "HTTP/1.1"), (h2_client(), "HTTP/2.0")] {
            for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
                let r = predict(&c, &gw, "iris", row, true).await;
                assert_eq!(format!("{:?}", r.version()), protocol);
                let v: Value = r.json().await.unwrap();
                let class: usize = want.label.parse().unwrap();
                assert_eq!(v["prediction"], labels[class], "row {i}: {v}");
            }
        }
    });

    let rows = self::rows(diabetes);
    let expected = reference_values(diabetes);
    let flat: Vec<f64> = rows.iter().flatten().map(|v| v.unwrap()).collect();
    let v = support::tritonclient_infer(
        &gw,
        &json!({
            "model": "diabetes",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows.len(), 10],
                        "data": flat}],
            "outputs": ["variable"],
        }),
    );
    for protocol in ["http", "grpc"] {
        assert_eq!(
            tensors(&v, protocol, "outputs"),
            [("variable".into(), "FP32".into(), vec![-1, 1])],
            "{protocol}"
        );
        let out = &v[protocol]["variable"];
        assert_eq!(out["shape"], json!([rows.len(), 1]), "{protocol}: {v}");
        let data: Vec<f64> = serde_json::from_value(out["data"].clone()).unwrap();
        for (i, (got, want)) in data.iter().zip(&expected).enumerate() {
            assert!(close_to(*got, *want), "{protocol} row {i}: {got} vs {want}");
        }
    }
}

/// ONNX Runtime's outputs for a tensor model's request (onnx-reference.py `--tensors`).
fn reference_tensors(model: &str, request: &Value) -> Value {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), request.to_string()).unwrap();
    let out = Command::new(python())
        .arg(repo().join("scripts/models/onnx-reference.py"))
        .arg(fixture(model, "model.onnx"))
        .arg("--tensors")
        .arg(file.path())
        .output()
        .expect("run onnx-reference.py");
    assert!(
        out.status.success(),
        "onnx-reference.py {model}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["outputs"].clone()
}

#[test]
fn a_tensor_model_answers_its_outputs_by_name_over_oip_and_refuses_predict() {
    let model = "torch-two-tower";
    let (_root, gw) = serve_exports(&[model], |o| o);
    // Three rows: a user's 8 features and the ids of 3 items.
    let user: Vec<f64> = (0..24).map(|i| (f64::from(i) * 0.37).sin()).collect();
    let items: Vec<i64> = (0..9).map(|i| (i * 7 + 3) % 50).collect();
    let inputs = json!([
        {"name": "user", "datatype": "FP32", "shape": [3, 8], "data": user},
        {"name": "items", "datatype": "INT64", "shape": [3, 3], "data": items},
    ]);
    let want = reference_tensors(model, &json!({ "inputs": inputs }));
    let v = support::tritonclient_infer(
        &gw,
        &json!({"model": model, "inputs": inputs, "outputs": ["score", "embedding"]}),
    );
    for protocol in ["http", "grpc"] {
        assert_eq!(
            tensors(&v, protocol, "inputs"),
            [
                ("user".into(), "FP32".into(), vec![-1, 8]),
                ("items".into(), "INT64".into(), vec![-1, 3])
            ],
            "{protocol}"
        );
        assert_eq!(
            tensors(&v, protocol, "outputs"),
            [
                ("score".into(), "FP32".into(), vec![-1, 1]),
                ("embedding".into(), "FP32".into(), vec![-1, 16])
            ],
            "{protocol}"
        );
        for name in ["score", "embedding"] {
            let (got, theirs) = (&v[protocol][name], &want[name]);
            assert_eq!(got["shape"], theirs["shape"], "{protocol} {name}: {v}");
            let got: Vec<f64> = serde_json::from_value(got["data"].clone()).unwrap();
            let theirs: Vec<f64> = serde_json::from_value(theirs["data"].clone()).unwrap();
            for (i, (a, b)) in got.iter().zip(&theirs).enumerate() {
                assert!(close_to(*a, *b), "{protocol} {name}[{i}]: {a} vs {b}");
            }
        }
    }
    // One output asked for, one answered; a datatype other than the graph's refused.
    let v = support::tritonclient_infer(
        &gw,
        &json!({"model": model, "inputs": inputs, "outputs": ["embedding"]}),
    );
    for protocol in ["http", "grpc"] {
        assert!(v[protocol]["embedding"].is_object(), "{v}");
        assert!(v[protocol].get("score").is_none(), "{v}");
    }
    let floats = json!([inputs[0], {"name": "items", "datatype": "FP32", "shape": [3, 3],
                                    "data": items}]);
    let v = support::tritonclient_infer(
        &gw,
        &json!({"model": model, "inputs": floats, "outputs": ["score"]}),
    );
    for protocol in ["http", "grpc"] {
        let error = v[protocol]["error"].as_str().unwrap_or_default();
        assert!(error.contains("is INT64, not FP32"), "{protocol}: {v}");
    }
    runtime().block_on(async {
        for c in [h1_client(), h2_client()] {
            // Each row is one read-through: asked again, from the cache.
            let body = json!({"inputs": inputs});
            let url = gw.url(&format!("/v2/models/{model}/infer"));
            let first = c.post(&url).json(&body).send().await.unwrap();
            assert_eq!(first.status(), 200);
            let again = c.post(&url).json(&body).send().await.unwrap();
            assert_eq!(again.headers()["x-cache"], "hit-l1");
            let v: Value = again.json().await.unwrap();
            assert_eq!(v["outputs"].as_array().unwrap().len(), 2, "{v}");
            // /predict takes no tensors: 415, naming the route that does.
            let r = predict(&c, &gw, model, &[Some(1.0); 11], false).await;
            assert_eq!(r.status(), 415);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "wrong_input_kind", "{v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("/v2/models/<model>/infer"), "{v}");
        }
    });
}
