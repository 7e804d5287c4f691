//! What one request writes to the log: nothing for an answer below 500 at the default
//! level; one "request failed" line carrying the request's fields for a 5xx; with this
//! module's debug events on, a "request done" line per request with every field.
// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::{Gateway, Options, h1_client, runtime};

/// The JSON log line whose span carries `request_id`.
fn line_for(gw: &Gateway, request_id: &str) -> Option<Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["span"]["request_id"] == request_id)
}

fn get(gw: &Gateway, path: &str, request_id: &str) -> u16 {
    runtime().block_on(async {
        h1_client()
            .get(gw.url(path))
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn a_5xx_writes_one_line_with_the_request_fields_and_a_2xx_none() {
    // /ready answers 503 for good: a required Redis that never answers.
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .unready()
            .env("INFERGATE_READY__REQUIRE", "[\"redis\"]")
            .env("INFERGATE_REDIS__URL", "redis://127.0.0.1:1/0"),
    );
    assert_eq!(get(&gw, "/health", "quiet-200"), 200);
    assert_eq!(get(&gw, "/ready", "loud-503"), 503);
    assert!(
        gw.wait_log("loud-503", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    let line = line_for(&gw, "loud-503").unwrap();
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["message"], "request failed");
    assert_eq!(line["span"]["route"], "/ready");
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["status"], 503);
    assert!(line["span"]["latency_ms"].as_f64().is_some(), "{line}");
    assert!(
        line_for(&gw, "quiet-200").is_none(),
        "a 200 wrote a line at the default level"
    );
}

#[test]
fn with_debug_events_on_every_request_writes_its_fields() {
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("RUST_LOG", "info,infergate::http=debug"),
    );
    let status = runtime().block_on(async {
        h1_client()
            .post(gw.url("/predict"))
            .header("x-request-id", "debug-predict")
            .json(&serde_json::json!({"features": [5.0, 3.3, 1.4, 0.2]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    assert!(
        gw.wait_log("debug-predict", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    let line = line_for(&gw, "debug-predict").unwrap();
    assert_eq!(line["message"], "request done");
    assert_eq!(line["span"]["route"], "/predict");
    assert_eq!(line["span"]["status"], 200);
    assert_eq!(line["span"]["model"], "iris-mlp");
    assert_eq!(line["span"]["cache"], "miss");
}
