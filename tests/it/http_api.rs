//! Every route over real HTTPS with HTTP/1.1 and HTTP/2, and over plaintext h1 and h2c.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use reqwest::{Client, Version};
use serde_json::{Value, json};
use support::{Gateway, Options, SETOSA, h1_client, h2_client, runtime};

/// Checks every route; `repeat` says whether the same prediction was asked before on this
/// gateway (then it comes from the cache).
async fn check_every_route(gw: &Gateway, client: &Client, version: Version, repeat: bool) {
    // /health
    let r = client.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(r.version(), version);
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["model"], "iris-mlp");
    assert!(body["version"].is_string());
    assert!(body["uptime_s"].is_u64());

    // /ready
    let r = client.get(gw.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["model"], "ok");
    assert_eq!(body["checks"]["redis"], "disabled");
    assert_eq!(body["checks"]["database"], "disabled");

    // /predict: a real prediction from the bundled model.
    let r = client
        .post(gw.url("/predict"))
        .header("x-request-id", "test-req-1")
        .json(&json!({ "features": SETOSA }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), version);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "test-req-1");
    let timing = r.headers()["server-timing"].to_str().unwrap().to_owned();
    if repeat {
        assert_eq!(r.headers()["x-cache"], "hit-l1");
        assert!(
            !timing.contains("infer;dur=") && timing.contains("total;dur="),
            "{timing}"
        );
    } else {
        assert_eq!(r.headers()["x-cache"], "miss");
        assert!(
            timing.contains("infer;dur=") && timing.contains("total;dur="),
            "{timing}"
        );
    }
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["prediction"], "setosa");
    assert_eq!(body["class_id"], 0);
    assert_eq!(body["model"]["name"], "iris-mlp");
    assert_eq!(body["cached"], repeat);
    let confidence = body["confidence"].as_f64().unwrap();
    assert!(confidence > 0.5 && confidence <= 1.0, "{confidence}");
    let id = body["prediction_id"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    let top = body["top_k"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    let sum: f64 = top.iter().map(|c| c["confidence"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{sum}");

    // A virginica row gives another answer: the model is not a constant.
    let r = client
        .post(gw.url("/predict?model=iris-mlp"))
        .json(&json!({ "features": [7.7, 3.0, 6.1, 2.3] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["prediction"], "virginica");

    // /stats
    let r = client.get(gw.url("/stats")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["total_predictions"].as_u64().unwrap() >= 2);
    assert!(body["predictions_last_hour"].as_u64().unwrap() >= 2);
    let avg = body["average_confidence"].as_f64().unwrap();
    assert!(avg > 0.0 && avg <= 1.0);
    let hit_rate = body["cache_hit_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&hit_rate));
    assert_eq!(hit_rate > 0.0, repeat, "{body}");
    assert_eq!(body["cache"], "l1");
    // The suite's backend, or `auto`'s choice: io_uring where allowed, else epoll.
    match support::io_backend_under_test() {
        Some(backend) => assert_eq!(body["io_backend"], backend.as_str(), "{body}"),
        None => assert!(
            body["io_backend"] == "uring" || body["io_backend"] == "epoll",
            "{body}"
        ),
    }

    // /metrics
    let r = client.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    for name in [
        "infergate_requests_total{",
        "infergate_request_duration_seconds_bucket{",
        "infergate_inference_duration_seconds_bucket{",
        "infergate_inference_queue_depth",
        "infergate_connections_active",
        "infergate_build_info{",
        "infergate_model_forwards_total{model=\"iris-mlp\"}",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
    // The allocator's totals, read at the scrape: a running gateway holds megabytes.
    for name in [
        "infergate_allocator_allocated_bytes",
        "infergate_allocator_resident_bytes",
    ] {
        let bytes: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("missing {name} in:\n{text}"))
            .parse()
            .unwrap();
        assert!(bytes > 1e6, "{name} {bytes}");
    }
}

#[test]
fn https_http1_and_http2_serve_every_route() {
    let gw = Gateway::start(Options::default());
    let rt = runtime();
    rt.block_on(check_every_route(
        &gw,
        &h1_client(),
        Version::HTTP_11,
        false,
    ));
    rt.block_on(check_every_route(&gw, &h2_client(), Version::HTTP_2, true));
    assert!(
        gw.logs().contains("self-signed development certificate"),
        "expected the dev-cert warning"
    );
}

#[test]
fn plaintext_http1_and_h2c_serve_every_route() {
    let gw = Gateway::start(Options::default().plaintext());
    let rt = runtime();
    rt.block_on(check_every_route(
        &gw,
        &h1_client(),
        Version::HTTP_11,
        false,
    ));
    rt.block_on(check_every_route(&gw, &h2_client(), Version::HTTP_2, true));
}

#[test]
fn head_requests_and_generated_request_ids() {
    let gw = Gateway::start(Options::default());
    let rt = runtime();
    rt.block_on(async {
        let client = h1_client();
        let r = client.head(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // A request without X-Request-Id gets a fresh UUIDv7.
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    });
}

/// W3C Trace Context: a client's `traceparent` trace is kept and the answer names the
/// gateway's span in it; without one (or with a broken one) the answer starts a trace.
#[test]
fn traceparent_is_honoured_and_answered() {
    let gw = Gateway::start(Options::default().tabular_only());
    let rt = runtime();
    rt.block_on(async {
        const THEIRS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for client in [h1_client(), h2_client()] {
            let r = client
                .post(gw.url("/predict"))
                .header("traceparent", THEIRS)
                .json(&serde_json::json!({"features": support::SETOSA}))
                .send()
                .await
                .unwrap();
            let answer = r.headers()["traceparent"].to_str().unwrap().to_owned();
            assert_eq!(answer.len(), 55, "{answer}");
            assert!(
                answer.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{answer}"
            );
            assert!(
                !answer.contains("00f067aa0ba902b7"),
                "the gateway's own span: {answer}"
            );
            assert!(answer.ends_with("-01"));
            for sent in [None, Some("00-zz-broken-01")] {
                let mut req = client.get(gw.url("/health"));
                if let Some(t) = sent {
                    req = req.header("traceparent", t);
                }
                let r = req.send().await.unwrap();
                let fresh = r.headers()["traceparent"].to_str().unwrap();
                assert_eq!(fresh.len(), 55, "{fresh}");
                assert!(!fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
            }
        }
    });
}

#[test]
fn configured_certificate_is_served() {
    // A certificate from files replaces the dev one (and no warning is logged).
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let gw = Gateway::start(
        Options::default()
            .env("INFERGATE_TLS__CERT_PATH", cert.display())
            .env("INFERGATE_TLS__KEY_PATH", key.display()),
    );
    let rt = runtime();
    rt.block_on(async {
        let r = h2_client().get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
    assert!(!gw.logs().contains("self-signed development certificate"));
}

#[test]
fn model_path_serves_another_model_from_disk() {
    // The bundled files under another name stand in for a user's own model.
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    std::fs::write(&weights, infergate::infer::demo::WEIGHTS).unwrap();
    let manifest = infergate::infer::demo::MANIFEST.replace("\"iris-mlp\"", "\"iris-from-disk\"");
    std::fs::write(dir.path().join("manifest.json"), manifest).unwrap();
    let gw = Gateway::start(Options::default().env("INFERGATE_MODEL__PATH", weights.display()));
    runtime().block_on(async {
        let client = h2_client();
        let r = client.get(gw.url("/health")).send().await.unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["model"], "iris-from-disk");
        let r = client
            .post(gw.url("/predict"))
            .json(&json!({ "features": SETOSA }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["model"]["name"], "iris-from-disk");
        assert_eq!(body["prediction"], "setosa");
    });
}
