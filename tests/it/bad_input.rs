//! Bad input of every kind gets its documented status and JSON error, the server stays up,
//! and the next request on the same client succeeds.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use support::{Gateway, Options, SETOSA, h1_client, h2_client, raw, runtime};

/// One bad request and what it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static [u8]>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    Case {
        name,
        method: "POST",
        path: "/predict",
        content_type: Some(b"application/json"),
        body: body.into(),
        status,
        code,
    }
}

fn cases() -> Vec<Case> {
    let huge = format!("{{\"features\":[{}]}}", vec!["1.5"; 100_000].join(","));
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        case(
            "malformed json",
            r#"{"features":[1,2"#,
            400,
            "malformed_json",
        ),
        case("truncated json", r#"{"feat"#, 400, "malformed_json"),
        case("empty body", "", 400, "malformed_json"),
        case(
            "top-level array",
            "[5.1,3.5,1.4,0.2]",
            400,
            "malformed_json",
        ),
        case(
            "features is a string",
            r#"{"features":"5.1,3.5"}"#,
            400,
            "malformed_json",
        ),
        case(
            "features is an object",
            r#"{"features":{"a":1}}"#,
            400,
            "malformed_json",
        ),
        case("deeply nested", nested, 400, "malformed_json"),
        case(
            "invalid utf-8",
            b"{\"features\":[1,\xff]}".to_vec(),
            400,
            "malformed_json",
        ),
        case("missing features", "{}", 422, "missing_features"),
        case(
            "empty features",
            r#"{"features":[]}"#,
            422,
            "empty_features",
        ),
        case(
            "too few features",
            r#"{"features":[1,2,3]}"#,
            422,
            "wrong_feature_count",
        ),
        case(
            "too many features",
            r#"{"features":[1,2,3,4,5]}"#,
            422,
            "wrong_feature_count",
        ),
        case("huge array", huge, 422, "wrong_feature_count"),
        case(
            "NaN token",
            r#"{"features":[1,NaN,3,4]}"#,
            422,
            "non_finite_feature",
        ),
        case(
            "Infinity token",
            r#"{"features":[1,2,-Infinity,4]}"#,
            422,
            "non_finite_feature",
        ),
        case(
            "NaN string",
            r#"{"features":[1,"NaN",3,4]}"#,
            422,
            "non_finite_feature",
        ),
        case(
            "beyond f32",
            r#"{"features":[1,2,3,1e39]}"#,
            422,
            "non_finite_feature",
        ),
        // Finite, but the model's arithmetic overflows into NaN (found by schemathesis:
        // a 200 with "confidence": null).
        case(
            "overflows the model",
            r#"{"features":[3e38,3e38,3e38,3e38]}"#,
            422,
            "non_finite_output",
        ),
        case(
            "string feature",
            r#"{"features":[1,"a",3,4]}"#,
            422,
            "non_numeric_feature",
        ),
        case(
            "null feature",
            r#"{"features":[1,null,3,4]}"#,
            422,
            "non_numeric_feature",
        ),
        case(
            "bool feature",
            r#"{"features":[true,2,3,4]}"#,
            422,
            "non_numeric_feature",
        ),
        case(
            "nested feature",
            r#"{"features":[[1],2,3,4]}"#,
            422,
            "non_numeric_feature",
        ),
        case(
            "unknown model",
            r#"{"features":[5.1,3.5,1.4,0.2],"model":"nope"}"#,
            404,
            "model_not_found",
        ),
        Case {
            content_type: Some(b"text/plain"),
            ..case(
                "text/plain",
                r#"{"features":[1,2,3,4]}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: Some(b"application/x-www-form-urlencoded"),
            ..case("form body", "features=1", 415, "unsupported_media_type")
        },
        Case {
            content_type: Some(b"image/png"),
            // An image content type goes to the image model; these bytes are no image.
            ..case(
                "image content type, not an image",
                "\u{89}PNG",
                422,
                "not_an_image",
            )
        },
        Case {
            content_type: Some(b"application/\xffjson"),
            ..case(
                "non-ascii content type",
                r#"{"features":[1,2,3,4]}"#,
                415,
                "unsupported_media_type",
            )
        },
        case(
            "oversize body",
            vec![b' '; 11 * 1024 * 1024],
            413,
            "payload_too_large",
        ),
        Case {
            method: "GET",
            path: "/nope",
            content_type: None,
            ..case("unknown route", "", 404, "not_found")
        },
        Case {
            method: "GET",
            path: "/predict",
            content_type: None,
            ..case("GET /predict", "", 405, "method_not_allowed")
        },
        Case {
            method: "DELETE",
            path: "/health",
            content_type: None,
            ..case("DELETE /health", "", 405, "method_not_allowed")
        },
    ]
}

async fn run_case(gw: &Gateway, client: &Client, c: &Case) {
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = client.request(method, gw.url(c.path)).body(c.body.clone());
    if let Some(ct) = c.content_type {
        req = req.header(
            "content-type",
            reqwest::header::HeaderValue::from_bytes(ct).unwrap(),
        );
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
    assert_eq!(r.status().as_u16(), c.status, "{}", c.name);
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "{}",
        c.name
    );
    if c.status == 405 {
        assert!(r.headers().contains_key("allow"), "{}: no Allow", c.name);
    }
    let body: Value = r.json().await.unwrap_or_else(|e| panic!("{}: {e}", c.name));
    assert_eq!(body["error"]["code"], c.code, "{}: {body}", c.name);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{}: empty message", c.name);
    if c.code == "wrong_feature_count" {
        assert!(message.contains("expected 4"), "{}: {message}", c.name);
    }

    // The server stays up and the same client's next request succeeds.
    let ok = client
        .post(gw.url("/predict"))
        .json(&json!({ "features": SETOSA }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("after {}: {e}", c.name));
    assert_eq!(ok.status(), 200, "request after {}", c.name);
}

#[test]
fn bad_input_table_over_http1_and_http2() {
    let gw = Gateway::start(Options::default());
    let cases = cases();
    assert!(cases.len() >= 25);
    let rt = runtime();
    for client in [h1_client(), h2_client()] {
        for c in &cases {
            rt.block_on(run_case(&gw, &client, c));
        }
    }
}

/// An input the model computes NaN from is refused before the caches and the log see it:
/// asked twice, it is computed twice and never answered from a cache.
#[test]
fn a_non_finite_output_is_never_cached() {
    let gw = Gateway::start(Options::default().tabular_only());
    runtime().block_on(async {
        let c = h1_client();
        for _ in 0..2 {
            let r = c
                .post(gw.url("/predict"))
                .json(&serde_json::json!({"features": [3e38, 3e38, 3e38, 3e38]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 422);
        }
        let hits = gw
            .metric("infergate_cache_requests_total{tier=\"l1\",result=\"hit\"}")
            .await;
        assert_eq!(hits, 0.0);
        assert_eq!(
            gw.metric("infergate_model_forwards_total").await,
            3.0,
            "warm-up + 2"
        );
    });
}

#[test]
fn chunked_oversize_body_is_refused_while_reading() {
    // No Content-Length: the limit is enforced as the body streams in.
    let gw = Gateway::start(Options::default());
    let rt = runtime();
    rt.block_on(async {
        let mut request =
            b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let chunk = vec![b' '; 1024 * 1024];
        for _ in 0..11 {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(&chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let (status, body) = raw::exchange(gw.addr, &request, Duration::from_secs(10))
            .await
            .expect("a response");
        assert_eq!(status, 413);
        assert!(body.contains("payload_too_large"), "{body}");
    });
}

#[test]
fn a_client_that_sends_headers_and_stalls_gets_408() {
    let gw = Gateway::start(Options::default().env("INFERGATE_SERVER__REQUEST_TIMEOUT_MS", 1000));
    let rt = runtime();
    rt.block_on(async {
        let request = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"features\":";
        let (status, body) = raw::exchange(gw.addr, request, Duration::from_secs(10))
            .await
            .expect("a response");
        assert_eq!(status, 408);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "request_timeout");
        // And the server still answers.
        let r = h1_client().get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
}

#[test]
fn bad_header_values() {
    let gw = Gateway::start(Options::default());
    let rt = runtime();
    rt.block_on(async {
        let client = h1_client();
        // An insane X-Request-Id is replaced, not echoed, and the request still succeeds.
        let r = client
            .post(gw.url("/predict"))
            .header("x-request-id", "x".repeat(500))
            .json(&json!({ "features": SETOSA }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-id"].len(), 36);

        // A Content-Length that is not a number is refused by the HTTP/1 parser with 400
        // (hyper answers parse errors itself, before any route, with an empty body).
        let request = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n";
        let (status, _) = raw::exchange(gw.addr, request, Duration::from_secs(5))
            .await
            .expect("a response");
        assert_eq!(status, 400);

        let r = client.get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
}

/// Found by the `router` fuzz target (`fuzz/corpus/router/regress-hyper-h1-parse-error-after-
/// queued-answers`): pipelined requests whose answers back up in the write queue, then bytes
/// that do not parse. Every answer already owed is delivered in order, then hyper's 400 for
/// the bad bytes, then the connection closes; the gateway, a debug build here (so hyper's
/// debug assertions are on), serves the next connection.
#[test]
fn pipelined_answers_backed_up_then_a_malformed_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PIPELINED: usize = 40;
    let gw = Gateway::start(Options::default().tabular_only());
    let rt = runtime();
    rt.block_on(async {
        let mut tls = raw::connect(gw.addr).await;
        let mut stream = "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(PIPELINED);
        stream.push_str("G\u{1}T / HTTP/1.1\r\nhost: x\r\n\r\n");
        // Everything is written before a byte is read, so the answers queue up behind the
        // unread socket.
        tls.write_all(&raw::with_suite_key(stream.as_bytes()))
            .await
            .unwrap();
        tls.flush().await.unwrap();
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut received))
            .await
            .expect("the connection closes once the answers are out")
            .ok();
        let statuses = raw::response_statuses(&received);
        assert_eq!(statuses.len(), PIPELINED + 1, "{statuses:?}");
        assert!(
            statuses[..PIPELINED].iter().all(|&s| s == 200),
            "{statuses:?}"
        );
        assert_eq!(statuses[PIPELINED], 400, "{statuses:?}");
        let health = h1_client().get(gw.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    });
}
