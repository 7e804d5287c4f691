//! Any bytes as what a client sends on one connection, served by the whole gateway — hyper,
//! the router, the handlers, the cache, the batcher and the bundled models (built from the
//! embedded defaults: no Redis, no PostgreSQL) — over an in-memory duplex.
//!
//! The first byte picks the protocol: even is HTTP/1.1, odd is HTTP/2 (the client preface is
//! sent first, so the rest is frames). The rest is written as the client's bytes, then the
//! client's half is closed, while the answer is read concurrently.
//!
//! Properties: nothing panics (libFuzzer aborts on any panic, the handlers' own included);
//! the connection ends once the client has closed its half (no hang); no answer is a 5xx but
//! a model fault (`internal`); every answer of 400 or more is the JSON error shape
//! `{"error": {"code": "...", "message": "..."}}` (on the Open Inference Protocol's routes
//! `{"error": "code: message"}`) with a JSON content type.
#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use infergate::config::{self, LoadOptions};
use infergate::server::backend::Backend;
use infergate::server::conn::LocalExec;
use infergate::server::idle::Activity;
use infergate::server::service::GatewayService;
use infergate::state::Gateway;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest one input's connection may take once the client has closed its half: far past
/// any answer's cost here (an image inference), so only a hang reaches it.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(20);

/// The in-memory pipe's capacity: more than any 4 KiB input's answers (a `/metrics` answer
/// is ~10 KiB; a 4 KiB input pipelines at most ~150 requests).
const PIPE_BYTES: usize = 16 << 20;

struct World {
    runtime: tokio::runtime::Runtime,
    gateway: Arc<Gateway>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let loaded = config::load(&LoadOptions {
            // No such directory: the built-in defaults (and any INFERGATE_* environment).
            config_dir: PathBuf::from("/nonexistent/infergate-fuzz"),
            ..LoadOptions::default()
        })
        .expect("the default configuration loads");
        // The router is the same whatever the backend; the fuzzer drives it over a duplex.
        let assembled = infergate::app::assemble(&loaded.config, Backend::Epoll)
            .expect("the gateway assembles");
        let gateway = assembled.gateway;
        runtime
            .block_on(infergate::app::warm_up(&gateway))
            .expect("the bundled models warm up");
        gateway.lifecycle.flags.mark_models_warm();
        gateway.lifecycle.flags.set_listening(true);
        World { runtime, gateway }
    })
}

/// The gateway's service, with every answer checked against the properties above.
#[derive(Clone)]
struct Checked(GatewayService);

impl Service<Request<Incoming>> for Checked {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let answer = self.0.call(req);
        Box::pin(async move {
            let response = answer.await?;
            let (parts, body) = response.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => panic!("the answer's body failed: {e}"),
            };
            check(parts.status, &parts.headers, &body);
            Ok(Response::from_parts(parts, Full::new(body)))
        })
    }
}

fn check(status: hyper::StatusCode, headers: &hyper::HeaderMap, body: &[u8]) {
    if status.as_u16() < 400 {
        return;
    }
    let text = String::from_utf8_lossy(body);
    let json: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {text}"));
    // Ours, or the Open Inference Protocol's on its routes: `"<code>: <message>"`.
    let code = match &json["error"] {
        serde_json::Value::String(s) => s.split_once(": ").map(|(code, _)| code),
        error => error["message"]
            .is_string()
            .then(|| error["code"].as_str())
            .flatten(),
    };
    assert!(
        code.is_some_and(
            |c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        ),
        "{status} answer lacks the error shape: {text}"
    );
    let content_type = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{status} answer has content type {content_type:?}"
    );
    assert!(
        !status.is_server_error() || code == Some("internal"),
        "{status} is not a model fault: {text}"
    );
}

/// Serves one connection whose client sends `input` and then closes its half.
async fn one_connection(gateway: &Arc<Gateway>, h2: bool, input: &[u8]) {
    // Big enough that the server's writes never wait for the reader: with a full pipe, a
    // parse error right after pipelined answers still queued trips a `debug_assert!` inside
    // hyper's HTTP/1.1 writer (`can_write_head`, found by this target: fuzz/README.md); the
    // release build has no such assertion, and the harness is not here to fuzz hyper's.
    let (mut client, server) = tokio::io::duplex(PIPE_BYTES);
    let service = Checked(GatewayService::new(
        Arc::clone(gateway),
        Activity::new(),
        Some([127, 0, 0, 1].into()),
        !h2,
    ));
    let io = TokioIo::new(server);
    let serve = async move {
        // The same builders, timer and limits as server::conn; errors (a malformed stream)
        // are the client's, and end the connection as they should.
        if h2 {
            let _ = http2::Builder::new(LocalExec)
                .timer(TokioTimer::new())
                .max_concurrent_streams(256)
                .serve_connection(io, service)
                .await;
        } else {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(io, service)
                .await;
        }
    };
    let talk = async move {
        let (mut reader, mut writer) = tokio::io::split(&mut client);
        let send = async {
            if h2 {
                let _ = writer.write_all(H2_PREFACE).await;
            }
            let _ = writer.write_all(input).await;
            let _ = writer.shutdown().await;
        };
        let mut answer = Vec::new();
        let receive = reader.read_to_end(&mut answer);
        let _ = tokio::join!(send, receive);
    };
    let both = async { tokio::join!(serve, talk) };
    if tokio::time::timeout(CONNECTION_DEADLINE, both)
        .await
        .is_err()
    {
        panic!("the connection did not end {CONNECTION_DEADLINE:?} after the client closed");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let world = world();
    let local = tokio::task::LocalSet::new();
    world
        .runtime
        .block_on(local.run_until(one_connection(&world.gateway, mode % 2 == 1, input)));
});
