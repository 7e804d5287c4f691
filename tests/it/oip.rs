//! The Open Inference Protocol (KServe v2) REST routes over real HTTPS, h1 and h2: health,
//! metadata, readiness; `infer` for the tabular and the image model, as JSON and with the
//! binary tensor data extension, with the classification extension; answers equal to
//! `/predict`'s and sharing its cache; the protocol's `{"error": "…"}` for bad input.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use reqwest::Client;
use serde_json::{Value, json};

use support::{Gateway, Options, grpc_frame, h1_client, h2_client, runtime};

const IRIS: [f32; 8] = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];

/// `/predict`'s probabilities for one row, by class id.
async fn predict_probs(c: &Client, gw: &Gateway, row: &[f32]) -> Vec<f64> {
    let v = gw
        .post_json(c, "/predict", &json!({ "features": row }))
        .await;
    let mut probs = vec![0.0; 3];
    for entry in v["top_k"].as_array().unwrap() {
        probs[entry["class_id"].as_u64().unwrap() as usize] = entry["confidence"].as_f64().unwrap();
    }
    probs
}

async fn get(c: &Client, gw: &Gateway, path: &str) -> (u16, Value) {
    let r = c.get(gw.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn infer(c: &Client, gw: &Gateway, model: &str, body: &Value) -> (u16, String, Value) {
    let r = c
        .post(gw.url(&format!("/v2/models/{model}/infer")))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache, r.json().await.unwrap_or(Value::Null))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn health_metadata_and_readiness_over_h1_and_h2() {
    let gw = Gateway::start(Options::default());
    runtime().block_on(async {
        for c in [h1_client(), h2_client()] {
            assert_eq!(
                get(&c, &gw, "/v2/health/live").await,
                (200, json!({"live": true}))
            );
            assert_eq!(
                get(&c, &gw, "/v2/health/ready").await,
                (200, json!({"ready": true}))
            );
            let (status, server) = get(&c, &gw, "/v2").await;
            assert_eq!(status, 200);
            assert_eq!(server["name"], "infergate");
            assert_eq!(
                server["extensions"],
                json!(["classification", "binary_tensor_data"])
            );
            let (status, meta) = get(&c, &gw, "/v2/models/iris-mlp").await;
            assert_eq!(status, 200);
            assert_eq!(meta["versions"], json!(["1.0.0"]));
            assert_eq!(
                meta["inputs"],
                json!([{"name": "features", "datatype": "FP32", "shape": [-1, 4]}])
            );
            assert_eq!(
                meta["outputs"],
                json!([{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}])
            );
            let (status, meta) = get(&c, &gw, "/v2/models/efficientnet-lite0/versions/1.0.0").await;
            assert_eq!(status, 200);
            assert_eq!(
                meta["inputs"],
                json!([{"name": "image", "datatype": "BYTES", "shape": [-1]}])
            );
            assert_eq!(meta["outputs"][0]["shape"], json!([-1, 1000]));
            let (status, ready) = get(&c, &gw, "/v2/models/iris-mlp/versions/1.0.0/ready").await;
            assert_eq!((status, &ready["ready"]), (200, &json!(true)));
            // Unknown model or version: 404 with the protocol's error, a string.
            let (status, err) = get(&c, &gw, "/v2/models/iris-mlp/versions/9/ready").await;
            assert_eq!(status, 404);
            assert!(
                err["error"].as_str().unwrap().contains("no version \"9\""),
                "{err}"
            );
            let (status, err) = get(&c, &gw, "/v2/models/nope").await;
            assert_eq!(status, 404);
            assert!(
                err["error"].as_str().unwrap().contains("iris-mlp"),
                "names what is loaded: {err}"
            );
            // The protocol's methods: infer is POST only.
            let r = c
                .get(gw.url("/v2/models/iris-mlp/infer"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405);
            assert_eq!(r.headers()["allow"], "POST");
            let err: Value = r.json().await.unwrap();
            assert!(err["error"].is_string(), "{err}");
        }
    });
}

#[test]
fn tabular_infer_answers_as_predict_does_and_shares_its_cache() {
    let gw = Gateway::start(Options::default().tabular_only());
    runtime().block_on(async {
        for (c, row) in [(h1_client(), [5.0f32, 3.4, 1.5, 0.2]), (h2_client(), [6.0, 2.9, 4.5, 1.5])] {
            let want = predict_probs(&c, &gw, &row).await;
            // The same row through OIP, nested data, FP64: from the cache /predict filled.
            let body = json!({
                "id": "req-1",
                "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [row]}],
            });
            let (status, cache, v) = infer(&c, &gw, "iris-mlp", &body).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(cache, "hit-l1", "/predict's answer, from the one cache");
            assert_eq!(v["model_name"], "iris-mlp");
            assert_eq!(v["model_version"], "1.0.0");
            assert_eq!(v["id"], "req-1");
            let out = &v["outputs"][0];
            assert_eq!(out["name"], "probabilities");
            assert_eq!(out["datatype"], "FP32");
            assert_eq!(out["shape"], json!([1, 3]));
            let got: Vec<f64> = out["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            assert!(got.iter().zip(&want).all(|(a, b)| close(*a, *b)), "{got:?} vs {want:?}");
        }
        // Two rows at once, each its own prediction; then the classification extension.
        let c = h1_client();
        let body = json!({
            "inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": IRIS}],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}],
        });
        let (status, cache, v) = infer(&c, &gw, "iris-mlp", &body).await;
        assert_eq!((status, cache.as_str()), (200, "miss"), "{v}");
        let out = &v["outputs"][0];
        assert_eq!(out["datatype"], "BYTES");
        assert_eq!(out["shape"], json!([2, 2]));
        let labels: Vec<&str> = out["data"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
        for (r, row) in IRIS.chunks(4).enumerate() {
            let probs = predict_probs(&c, &gw, row).await;
            let best = (0..3).max_by(|&a, &b| probs[a].total_cmp(&probs[b])).unwrap();
            let parts: Vec<&str> = labels[2 * r].split(':').collect();
            assert_eq!(parts[1], best.to_string(), "{labels:?}");
            assert!(close(parts[0].parse().unwrap(), probs[best]), "{labels:?}");
            assert!(["setosa", "versicolor", "virginica"].contains(&parts[2]), "{labels:?}");
        }
        let (_, cache, _) = infer(&c, &gw, "iris-mlp", &body).await;
        assert_eq!(cache, "hit-l1");
    });
}

/// A binary-extension body: the JSON header, then the tensor bytes.
fn binary_body(header: &Value, data: &[u8]) -> (Vec<u8>, usize) {
    let mut body = serde_json::to_vec(header).unwrap();
    let len = body.len();
    body.extend_from_slice(data);
    (body, len)
}

async fn infer_binary(
    c: &Client,
    gw: &Gateway,
    model: &str,
    header: &Value,
    data: &[u8],
) -> (u16, Value, Vec<u8>) {
    let (body, len) = binary_body(header, data);
    let r = c
        .post(gw.url(&format!("/v2/models/{model}/infer")))
        .header("content-type", "application/octet-stream")
        .header("inference-header-content-length", len.to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let header_len: Option<usize> = r
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = r.bytes().await.unwrap().to_vec();
    match header_len {
        Some(n) => (
            status,
            serde_json::from_slice(&bytes[..n]).unwrap(),
            bytes[n..].to_vec(),
        ),
        None => (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Vec::new(),
        ),
    }
}

fn f32s(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
        .collect()
}

#[test]
fn binary_tensors_in_and_out_for_the_tabular_and_the_image_model() {
    let gw = Gateway::start(Options::default());
    runtime().block_on(async {
        for c in [h1_client(), h2_client()] {
            let row = [5.9f32, 3.0, 5.1, 1.8];
            let want = predict_probs(&c, &gw, &row).await;
            let data: Vec<u8> = row.iter().flat_map(|f| f.to_le_bytes()).collect();
            let header = json!({
                "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                            "parameters": {"binary_data_size": 16}}],
                "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}],
            });
            let (status, v, tail) = infer_binary(&c, &gw, "iris-mlp", &header, &data).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 12);
            let got = f32s(&tail);
            assert!(
                got.iter().zip(&want).all(|(a, b)| close(*a, *b)),
                "{got:?} vs {want:?}"
            );

            // An image as BYTES (a 4-byte length, then the file), against /predict's upload.
            let path = std::path::Path::new("tests/fixtures/images/cat.png");
            let image = std::fs::read(path).unwrap();
            let predicted = gw.upload_file(&c, path).await;
            let mut data = (image.len() as u32).to_le_bytes().to_vec();
            data.extend_from_slice(&image);
            let header = json!({
                "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                            "parameters": {"binary_data_size": data.len()}}],
                "parameters": {"binary_data_output": true},
            });
            let (status, v, tail) =
                infer_binary(&c, &gw, "efficientnet-lite0", &header, &data).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["outputs"][0]["shape"], json!([1, 1000]));
            let probs = f32s(&tail);
            assert_eq!(probs.len(), 1000);
            for p in predicted["predictions"].as_array().unwrap() {
                let id = p["class_id"].as_u64().unwrap() as usize;
                assert!(
                    close(probs[id], p["confidence"].as_f64().unwrap()),
                    "class {id}"
                );
            }
        }
    });
}

#[test]
fn bad_tensors_get_the_protocols_error_and_the_server_carries_on() {
    let gw = Gateway::start(Options::default().tabular_only());
    runtime().block_on(async {
        let c = h1_client();
        let input = |name: &str, shape: Value, datatype: &str, data: Value| {
            json!({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]})
        };
        let cases = [
            (input("x", json!([1, 4]), "FP32", json!(IRIS[..4])), 422, "its input is \"features\""),
            (input("features", json!([1, 3]), "FP32", json!([1, 2, 3])), 422, "shape [N, 4]"),
            (input("features", json!([1, 4]), "FP32", json!([1, 2, 3])), 422, "holds 4 elements"),
            (input("features", json!([1, 4]), "FP9", json!(IRIS[..4])), 422, "unknown datatype"),
            (input("features", json!([1, 4]), "FP32", json!(["a", 1, 2, 3])), 422, "not a F32 element"),
            (input("features", json!([-1, 4]), "FP32", json!(IRIS[..4])), 422, "negative"),
            (input("features", json!([1]), "BYTES", json!(["abc"])), 415, "not BYTES"),
            // Finite, but overflowing the model into NaN: refused, not `data: [null, …]`.
            (input("features", json!([1, 4]), "FP32", json!([3e38, 3e38, 3e38, 3e38])), 422, "non_finite_output"),
            (json!({"inputs": "nope"}), 400, "infer request"),
        ];
        for (body, status, needle) in cases {
            let (got, _, v) = infer(&c, &gw, "iris-mlp", &body).await;
            let message = v["error"].as_str().unwrap_or_else(|| panic!("no error string: {v}"));
            assert_eq!(got, status, "{body}: {message}");
            assert!(message.contains(needle), "{body}: {message}");
        }
        // Binary: NaN, a header length past the end, data cut short.
        let nan: Vec<u8> = [1.0f32, f32::NAN, 1.0, 1.0].iter().flat_map(|f| f.to_le_bytes()).collect();
        let header = json!({"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                        "parameters": {"binary_data_size": 16}}]});
        let (status, v, _) = infer_binary(&c, &gw, "iris-mlp", &header, &nan).await;
        assert_eq!(status, 422, "{v}");
        assert!(v["error"].as_str().unwrap().starts_with("non_finite_feature"), "{v}");
        let (status, v, _) = infer_binary(&c, &gw, "iris-mlp", &header, &nan[..8]).await;
        assert_eq!(status, 422, "{v}");
        let r = c
            .post(gw.url("/v2/models/iris-mlp/infer"))
            .header("inference-header-content-length", "100000")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        // Still serving.
        let body = input("features", json!([4]), "FP32", json!(IRIS[..4]));
        let (status, _, v) = infer(&c, &gw, "iris-mlp", &body).await;
        assert_eq!(status, 200, "{v}");
    });
}

#[test]
fn grpc_refusals_are_grpc_statuses_and_health_is_open() {
    use infergate::http::grpc::proto;
    let gw = Gateway::start(Options::default().with_suite_key().tabular_only());
    runtime().block_on(async {
        let anonymous = support::bare_builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let call = |client: Client, method: &str, body: Vec<u8>, timeout: Option<&str>| {
            let mut req = client
                .post(gw.url(&format!("/inference.GRPCInferenceService/{method}")))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(body);
            if let Some(t) = timeout {
                req = req.header("grpc-timeout", t);
            }
            async move {
                let r = req.send().await.unwrap();
                let status = r
                    .headers()
                    .get("grpc-status")
                    .map(|v| v.to_str().unwrap().to_owned());
                let message = r
                    .headers()
                    .get("grpc-message")
                    .map(|v| v.to_str().unwrap().to_owned());
                (r.status().as_u16(), status, message)
            }
        };
        let live = grpc_frame(&proto::ServerLiveRequest {});
        let meta = grpc_frame(&proto::ModelMetadataRequest {
            name: "iris-mlp".into(),
            version: String::new(),
        });
        // Health needs no key; the rest answers UNAUTHENTICATED (16) in a trailers-only
        // answer (HTTP 200, as gRPC has it).
        let (http, status, _) = call(anonymous.clone(), "ServerLive", live, None).await;
        assert_eq!((http, status), (200, None), "OK comes in the trailers");
        let (http, status, message) = call(anonymous, "ModelMetadata", meta.clone(), None).await;
        assert_eq!((http, status.as_deref()), (200, Some("16")), "{message:?}");
        // An unknown model: NOT_FOUND (5), the message saying what is loaded.
        let unknown = grpc_frame(&proto::ModelReadyRequest {
            name: "nope".into(),
            version: String::new(),
        });
        let (_, status, message) = call(h2_client(), "ModelReady", unknown, None).await;
        assert_eq!(status.as_deref(), Some("5"), "{message:?}");
        // A grpc-timeout that cannot be read: INVALID_ARGUMENT (3).
        let (_, status, message) = call(h2_client(), "ModelMetadata", meta, Some("soon")).await;
        assert_eq!(status.as_deref(), Some("3"), "{message:?}");
        // A method the service does not have: UNIMPLEMENTED (12), as gRPC has it.
        let (_, status, _) = call(h2_client(), "ModelExplain", Vec::new(), None).await;
        assert_eq!(status.as_deref(), Some("12"));
    });
}
