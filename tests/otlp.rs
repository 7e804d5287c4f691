//! OTLP trace export (`[otlp]`, feature `otlp`): a collector speaking OTLP/HTTP, here a
//! hyper server decoding the protobuf the real exporter posts, receives one server span per
//! request whose ids are the ones the answer's `traceparent` names; a client's unsampled
//! trace and (at ratio 0) new traces are not sent; the spans queued at the drain go out
//! before the process exits; a full batch (`otlp.max_export_batch_size`) goes out at once.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

#[path = "it/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;
use tokio::sync::mpsc;

use support::{Gateway, Options, h1_client, h2_client};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";

/// What one export post carried.
struct Post {
    path: String,
    content_type: String,
    request: ExportTraceServiceRequest,
}

/// A runtime whose worker keeps the collector answering while the test waits outside it
/// (for the gateway's exit, say).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A collector on a free port: every post it receives, decoded.
async fn collector() -> (SocketAddr, mpsc::UnboundedReceiver<Post>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let content_type = req
                        .headers()
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    let _ = tx.send(Post {
                        path,
                        content_type,
                        request,
                    });
                    // An empty ExportTraceServiceResponse: everything accepted.
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    )
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

/// The answer's `traceparent`, split: (trace id, span id, flags).
fn traceparent(resp: &reqwest::Response) -> (String, String, String) {
    let v = resp.headers()["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = v.split('-').collect();
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Receives posts until `want` spans arrived or `within` passed; the spans, each with its
/// resource's `service.name`.
async fn spans(
    rx: &mut mpsc::UnboundedReceiver<Post>,
    want: usize,
    within: Duration,
) -> Vec<(Span, Option<String>)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while out.len() < want {
        let Ok(Some(post)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        assert_eq!(
            post.path, "/v1/traces",
            "a bare endpoint gets the traces path"
        );
        assert_eq!(post.content_type, "application/x-protobuf");
        for resource_spans in post.request.resource_spans {
            let service = resource_spans.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
            });
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    out.push((span, service.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn each_request_is_one_server_span_with_the_ids_its_answer_names() {
    let rt = runtime();
    let (addr, mut rx) = rt.block_on(collector());
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_OTLP__ENDPOINT", format!("http://{addr}"))
            .env("INFERGATE_OTLP__SERVICE_NAME", "edge-test")
            .env("INFERGATE_OTLP__EXPORT_INTERVAL_MS", 100),
    );
    rt.block_on(async {
        let body = json!({"features": [5.1, 3.5, 1.4, 0.2]});
        // A client's sampled trace, over h1.
        let r = h1_client()
            .post(gw.url("/predict"))
            .header(
                "traceparent",
                format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (trace_a, span_a, _) = traceparent(&r);
        assert_eq!(trace_a, CLIENT_TRACE);
        // A new trace, over h2: the same input, now a cache hit.
        let r = h2_client()
            .post(gw.url("/predict"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (trace_b, span_b, flags_b) = traceparent(&r);
        assert_eq!(flags_b, "01", "ratio 1: every new trace is sampled");
        // A client that says its trace is not sampled: nothing is sent for it.
        let unsampled = "11111111111111111111111111111111";
        let r = h1_client()
            .get(gw.url("/health"))
            .header("traceparent", format!("00-{unsampled}-{CLIENT_PARENT}-00"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A 404 is a span too, and not an error (the client's fault).
        let r = h1_client().get(gw.url("/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let (trace_d, span_d, _) = traceparent(&r);

        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while ![&span_a, &span_b, &span_d]
            .iter()
            .all(|id| got.iter().any(|(s, _): &(Span, _)| &hex(&s.span_id) == *id))
            && tokio::time::Instant::now() < deadline
        {
            got.extend(spans(&mut rx, 1, Duration::from_secs(1)).await);
        }
        let find = |span_id: &str| {
            got.iter()
                .find(|(s, _)| hex(&s.span_id) == span_id)
                .unwrap_or_else(|| panic!("no span {span_id} among {} received", got.len()))
        };
        let (a, service) = find(&span_a);
        assert_eq!(service.as_deref(), Some("edge-test"));
        assert_eq!(hex(&a.trace_id), CLIENT_TRACE, "the client's trace is kept");
        assert_eq!(
            hex(&a.parent_span_id),
            CLIENT_PARENT,
            "under the client's span"
        );
        assert_eq!(a.name, "POST /predict");
        assert_eq!(a.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(int_attr(a, "http.response.status_code"), Some(200));
        assert_eq!(string_attr(a, "http.route").as_deref(), Some("/predict"));
        assert_eq!(
            string_attr(a, "infergate.model").as_deref(),
            Some("iris-mlp")
        );
        assert_eq!(string_attr(a, "infergate.cache").as_deref(), Some("miss"));
        assert!(attr(a, "infergate.phase.infer_ms").is_some());
        assert!(a.end_time_unix_nano > a.start_time_unix_nano);

        let (b, _) = find(&span_b);
        assert_eq!(hex(&b.trace_id), trace_b);
        assert!(b.parent_span_id.is_empty(), "a new trace's root span");
        assert_eq!(string_attr(b, "infergate.cache").as_deref(), Some("hit-l1"));

        let (d, _) = find(&span_d);
        assert_eq!(hex(&d.trace_id), trace_d);
        assert_eq!(int_attr(d, "http.response.status_code"), Some(404));
        assert_eq!(string_attr(d, "http.route").as_deref(), Some("unknown"));
        let status = d.status.as_ref().map_or(0, |s| s.code);
        assert_eq!(status, 0, "STATUS_CODE_UNSET: a 4xx is not a server error");

        // Later posts (if any) never carry the unsampled trace either.
        let late = spans(&mut rx, usize::MAX, Duration::from_secs(1)).await;
        // The rig's own readiness polls (GET /ready) are spans too.
        let all: Vec<_> = got
            .iter()
            .chain(&late)
            .filter(|(s, _)| s.name != "GET /ready")
            .collect();
        assert!(
            all.iter().all(|(s, _)| hex(&s.trace_id) != unsampled),
            "an unsampled trace was exported"
        );
        assert_eq!(all.len(), 3, "one span per sampled request, no more");
    });
}

#[test]
fn spans_queued_at_the_drain_are_sent_before_exit_and_the_ratio_samples_new_traces() {
    let rt = runtime();
    let (addr, mut rx) = rt.block_on(collector());
    let mut gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env(
                "INFERGATE_OTLP__ENDPOINT",
                format!("http://{addr}/v1/traces"),
            )
            .env("INFERGATE_OTLP__SAMPLE_RATIO", 0)
            // Far beyond the test: only the drain's flush can send them.
            .env("INFERGATE_OTLP__EXPORT_INTERVAL_MS", 600_000),
    );
    let span_a = rt.block_on(async {
        let r = h1_client().get(gw.url("/health")).send().await.unwrap();
        let (_, _, flags) = traceparent(&r);
        assert_eq!(
            flags, "00",
            "ratio 0: a new trace is not sampled, and says so"
        );
        let r = h2_client()
            .get(gw.url("/ready"))
            .header(
                "traceparent",
                format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        traceparent(&r).1
    });
    gw.stop_cleanly(Duration::from_secs(20));
    rt.block_on(async {
        let got = spans(&mut rx, 1, Duration::from_secs(5)).await;
        assert_eq!(
            got.len(),
            1,
            "the client's sampled request, flushed at exit"
        );
        let (span, service) = &got[0];
        assert_eq!(hex(&span.span_id), span_a);
        assert_eq!(hex(&span.trace_id), CLIENT_TRACE);
        assert_eq!(span.name, "GET /ready");
        assert_eq!(service.as_deref(), Some("infergate"));
    });
}

#[test]
fn a_full_batch_is_posted_at_once_without_waiting_for_the_export_interval() {
    let rt = runtime();
    let (addr, mut rx) = rt.block_on(collector());
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_OTLP__ENDPOINT", format!("http://{addr}"))
            // Far beyond the test: only full batches are posted.
            .env("INFERGATE_OTLP__EXPORT_INTERVAL_MS", 600_000)
            .env("INFERGATE_OTLP__MAX_EXPORT_BATCH_SIZE", 2),
    );
    rt.block_on(async {
        let client = h1_client();
        for _ in 0..4 {
            let r = client.get(gw.url("/health")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < 4 {
            let post = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("a full batch is posted without waiting for the interval")
                .unwrap();
            sizes.push(
                post.request
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum(),
            );
        }
        assert!(
            sizes.iter().all(|&n| n <= 2),
            "posts of at most 2: {sizes:?}"
        );
    });
}
