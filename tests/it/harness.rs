//! The gateway in this process over an in-memory pipe (`support::in_process`), with
//! HTTP/1.1 and HTTP/2: the routes and error shapes that need no real socket, and several
//! gateways side by side, each with its own metrics.

use serde_json::json;

use crate::support::SETOSA;
use crate::support::in_process::{Answer, InProcess, Protocol};

/// A row the bundled model calls virginica.
const VIRGINICA: [f64; 4] = [7.7, 3.0, 6.1, 2.3];

fn features(row: [f64; 4]) -> String {
    json!({ "features": row }).to_string()
}

/// Asserts the JSON error shape: `{"error": {"code": code, "message": "..."}}`.
fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "empty message: {body}");
}

#[tokio::test]
async fn health_and_ready_over_h1_and_h2() {
    let gw = InProcess::start("");
    for protocol in Protocol::BOTH {
        let mut client = gw.connect(protocol).await;
        let health = client.get("/health").await;
        assert_eq!(health.status, 200, "{protocol:?}: {}", health.text());
        assert_eq!(health.version, protocol.version());
        let body = health.json();
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["model"], "iris-mlp");
        assert!(body["uptime_s"].is_u64());

        let ready = client.get("/ready").await;
        assert_eq!(ready.status, 200, "{protocol:?}: {}", ready.text());
        let body = ready.json();
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["model"], "ok");
        assert_eq!(body["checks"]["redis"], "disabled");
        assert_eq!(body["checks"]["database"], "disabled");
    }
}

#[tokio::test]
async fn a_prediction_is_a_miss_then_an_l1_hit_over_h1_and_h2() {
    let gw = InProcess::start("");
    for (protocol, row, label) in [
        (Protocol::Http1, SETOSA, "setosa"),
        (Protocol::Http2, VIRGINICA, "virginica"),
    ] {
        let mut client = gw.connect(protocol).await;
        let mut bodies = Vec::new();
        for (x_cache, cached) in [("miss", false), ("hit-l1", true)] {
            let answer = client.post_json("/predict", &features(row)).await;
            assert_eq!(answer.status, 200, "{protocol:?}: {}", answer.text());
            assert_eq!(answer.version, protocol.version());
            assert_eq!(answer.header("x-cache"), Some(x_cache), "{protocol:?}");
            assert!(answer.header("x-request-id").is_some());
            let body = answer.json();
            assert_eq!(body["prediction"], label, "{body}");
            assert_eq!(body["model"]["name"], "iris-mlp");
            assert_eq!(body["cached"], cached);
            bodies.push(body);
        }
        // The hit is the miss's answer (its own prediction id).
        assert_eq!(bodies[0]["top_k"], bodies[1]["top_k"]);
        assert_ne!(bodies[0]["prediction_id"], bodies[1]["prediction_id"]);
    }
    // One cache behind both protocols.
    let mut h2 = gw.connect(Protocol::Http2).await;
    let answer = h2.post_json("/predict", &features(SETOSA)).await;
    assert_eq!(answer.header("x-cache"), Some("hit-l1"));
    let stats = gw.gateway().lifecycle.stats.snapshot();
    assert_eq!((stats.cache_hits(), stats.cache_misses()), (3, 2));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let gw = InProcess::start("");
    for protocol in Protocol::BOTH {
        let mut client = gw.connect(protocol).await;
        let answer = client.get("/nope").await;
        assert_error(&answer, 404, "not_found");

        let answer = client.get("/predict").await;
        assert_error(&answer, 405, "method_not_allowed");
        assert_eq!(answer.header("allow"), Some("POST"), "{protocol:?}");

        let delete = client
            .request(http::Method::DELETE, "/health")
            .body(Default::default())
            .unwrap();
        let answer = client.send(delete).await;
        assert_error(&answer, 405, "method_not_allowed");
        assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{protocol:?}");
    }
}

#[tokio::test]
async fn malformed_json_is_a_400_with_the_error_shape_and_the_connection_serves_on() {
    let gw = InProcess::start("");
    for protocol in Protocol::BOTH {
        let mut client = gw.connect(protocol).await;
        let answer = client.post_json("/predict", r#"{"features":[1,2"#).await;
        assert_error(&answer, 400, "malformed_json");
        let answer = client.post_json("/predict", &features(SETOSA)).await;
        assert_eq!(
            answer.status,
            200,
            "{protocol:?} after a 400: {}",
            answer.text()
        );
    }
}

/// Several gateways in one process (which `app::assemble`'s process-wide recorder forbade):
/// each renders its own `/metrics`.
#[tokio::test]
async fn gateways_side_by_side_count_their_own_requests() {
    let (a, b) = (InProcess::start(""), InProcess::start(""));
    let (mut to_a, mut to_b) = (
        a.connect(Protocol::Http1).await,
        b.connect(Protocol::Http2).await,
    );
    for _ in 0..3 {
        assert_eq!(
            to_a.post_json("/predict", &features(SETOSA)).await.status,
            200
        );
    }
    assert_eq!(
        to_b.post_json("/predict", &features(SETOSA)).await.status,
        200
    );

    for (client, predictions) in [(&mut to_a, 3), (&mut to_b, 1)] {
        let metrics = client.get("/metrics").await;
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        let line =
            format!(r#"infergate_requests_total{{route="/predict",status="200"}} {predictions}"#);
        assert!(
            text.lines().any(|l| l == line),
            "{:?}: no {line:?} in\n{text}",
            client.protocol()
        );
        // The recorder was described and set up like the binary's.
        assert!(
            text.contains(r#"infergate_io_backend{backend="epoll"} 1"#),
            "{text}"
        );
    }
}
