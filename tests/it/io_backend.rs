//! The I/O backends: `server.io` chosen at start (io_uring, or epoll where io_uring is
//! refused, shown under a seccomp filter that refuses it as Docker does), reported in
//! `/stats`, `/ready`, the metrics and the log; and the descriptors of connections that
//! timed out really closed, on the backend under test.
// Tests: a failed unwrap is a failed test. Waiting on a real child process is wall-clock
// time, not the paused tokio clock.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use crate::support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Gateway, Options, Refuse, h1_client, h2_client, raw, runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above the timeouts configured here: "the server closed it".
const CLOSE_WITHIN: Duration = Duration::from_secs(20);

/// The backend the descriptor tests run on: the suite's, or io_uring (the backend whose
/// ops can outlive the connection that started them).
fn backend() -> String {
    support::io_backend_under_test().unwrap_or_else(|| "uring".to_owned())
}

/// The WARN lines about the I/O backend (JSON logs; every test gateway also warns that
/// it serves a development certificate).
fn backend_warnings(gw: &Gateway) -> Vec<Value> {
    gw.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "WARN")
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("io_uring") || m.contains("epoll"))
        })
        .collect()
}

async fn assert_reports(gw: &Gateway, backend: &str) {
    let stats = gw.get_json("/stats").await;
    assert_eq!(stats["io_backend"], backend, "{stats}");
    let ready = gw.get_json("/ready").await;
    assert_eq!(ready["io_backend"], backend, "{ready}");
    let other = if backend == "uring" { "epoll" } else { "uring" };
    let on = format!("infergate_io_backend{{backend=\"{backend}\"}}");
    let off = format!("infergate_io_backend{{backend=\"{other}\"}}");
    assert_eq!(gw.metric(&on).await, 1.0);
    assert_eq!(gw.metric(&off).await, 0.0);
    for client in [h1_client(), h2_client()] {
        let r = client.get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let listening = gw
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "listening")
        .expect("a listening line");
    assert_eq!(listening["io_backend"], backend, "{listening}");
}

#[test]
fn each_backend_serves_and_says_so() {
    let rt = runtime();
    for backend in ["uring", "epoll"] {
        let gw = Gateway::start(Options::default().arg("--io").arg(backend));
        rt.block_on(assert_reports(&gw, backend));
        assert!(backend_warnings(&gw).is_empty(), "{}", gw.logs());
    }
}

/// Starts the gateway with `--io auto` under a seccomp filter that refuses the io_uring
/// syscalls `refuse` names, asserts it serves and reports epoll with exactly one backend
/// WARN, and returns the gateway and that WARN's message.
fn fallen_back(refuse: Refuse) -> (Gateway, String) {
    let mut refused = Command::new(support::bin());
    support::deny_io_uring(&mut refused, refuse);
    let gw = Gateway::start_with(refused, Options::default().arg("--io").arg("auto"));
    runtime().block_on(assert_reports(&gw, "epoll"));
    let warnings = backend_warnings(&gw);
    assert_eq!(warnings.len(), 1, "{}", gw.logs());
    let message = warnings[0]["message"].as_str().unwrap().to_owned();
    (gw, message)
}

#[test]
fn auto_serves_on_epoll_where_io_uring_is_refused_and_warns_once() {
    let (_gw, message) = fallen_back(Refuse::All);
    assert!(message.contains("serving on epoll"), "{message}");
    assert!(message.contains("EPERM"), "{message}");
    assert!(message.contains("seccomp"), "{message}");
    assert!(
        message.contains("config/seccomp/io_uring.json"),
        "{message}"
    );
}

#[test]
fn auto_serves_on_epoll_where_a_ring_can_be_made_but_never_entered() {
    let (gw, message) = fallen_back(Refuse::EnterOnly);
    assert!(message.contains("did not complete"), "{message}");
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
}

#[test]
fn auto_serves_on_io_uring_where_it_is_allowed() {
    let gw = Gateway::start(Options::default().arg("--io").arg("auto"));
    runtime().block_on(assert_reports(&gw, "uring"));
}

#[test]
fn uring_where_io_uring_is_refused_exits_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut refused = Command::new(support::bin());
    support::deny_io_uring(&mut refused, Refuse::All);
    let mut child = refused
        .arg("--config-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--io", "uring"])
        .env_remove("INFERGATE_SERVER__IO")
        .env("INFERGATE_SECRETS__DIR", dir.path().join("no-secrets"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running with io_uring refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server.io = \"uring\""), "{stderr}");
    assert!(stderr.contains("EPERM"), "{stderr}");
    assert!(stderr.contains("seccomp"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Waits until the gateway's descriptor count is at most `baseline`, returning the last
/// count seen.
fn settle_fds(gw: &Gateway, baseline: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let now = gw.open_fds();
        if now <= baseline || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The descriptor count of a gateway with no client connection: after the readiness
/// probe's connection has been closed by the idle timeout.
fn baseline_fds(gw: &Gateway, idle: Duration) -> usize {
    std::thread::sleep(idle + Duration::from_millis(500));
    gw.open_fds()
}

/// Asserts the server ends every one of `streams` (`what` they are, for the message).
async fn all_see_eof<S: tokio::io::AsyncRead + Unpin>(what: &str, streams: &mut [S]) {
    for (i, stream) in streams.iter_mut().enumerate() {
        assert!(sees_eof(stream).await, "{what} connection {i} never closed");
    }
}

/// Asserts the gateway's descriptor count comes back to `baseline` within 10 s.
fn assert_freed(gw: &Gateway, baseline: usize) {
    let after = settle_fds(gw, baseline, Duration::from_secs(10));
    assert!(
        after <= baseline,
        "{after} descriptors open, {baseline} before"
    );
}

/// Reads until the server ends the connection; whether it did within [`CLOSE_WITHIN`].
async fn sees_eof<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[test]
fn timed_out_connections_free_their_descriptors() {
    let gw = Gateway::start(
        Options::default()
            .arg("--io")
            .arg(backend())
            .env("INFERGATE_SERVER__TLS_HANDSHAKE_TIMEOUT_MS", 1000)
            .env("INFERGATE_SERVER__HEADER_READ_TIMEOUT_MS", 1000)
            .env("INFERGATE_SERVER__KEEPALIVE_IDLE_TIMEOUT_MS", 1000),
    );
    let baseline = baseline_fds(&gw, Duration::from_secs(1));
    let rt = runtime();
    rt.block_on(async {
        // 50 that send nothing (the handshake timeout), 50 that finish TLS and send half a
        // request head (the header timeout): each leaves a read in flight on the server.
        let mut silent = Vec::new();
        for _ in 0..50 {
            silent.push(TcpStream::connect(gw.addr).await.unwrap());
        }
        let mut half = Vec::new();
        for _ in 0..50 {
            let mut tls = raw::connect(gw.addr).await;
            tls.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            half.push(tls);
        }
        let held = gw.open_fds();
        assert!(held >= baseline + 90, "held {held}, baseline {baseline}");
        all_see_eof("silent", &mut silent).await;
        all_see_eof("half-sent", &mut half).await;
    });
    assert_freed(&gw, baseline);
}

#[test]
fn a_thousand_idle_keep_alive_connections_are_closed_and_freed() {
    support::raise_fd_limit();
    let idle = Duration::from_secs(3);
    let gw = Gateway::start(
        Options::default()
            .arg("--io")
            .arg(backend())
            .env(
                "INFERGATE_SERVER__KEEPALIVE_IDLE_TIMEOUT_MS",
                idle.as_millis(),
            )
            .env("INFERGATE_SERVER__TLS_HANDSHAKE_TIMEOUT_MS", 30_000),
    );
    let baseline = baseline_fds(&gw, idle);
    let rt = runtime();
    rt.block_on(async {
        let mut conns = Vec::with_capacity(1000);
        // In waves, so a wave's handshakes finish well inside the idle timeout.
        for _ in 0..10 {
            let wave = (0..100).map(|_| one_request_kept_alive(gw.addr));
            for conn in futures_util::future::join_all(wave).await {
                match conn {
                    Ok(tls) => conns.push(tls),
                    Err(e) => panic!("{e}; logs:\n{}", gw.logs()),
                }
            }
        }
        let held = gw.open_fds();
        assert!(held >= baseline + 1000, "held {held}, baseline {baseline}");
        all_see_eof("idle", &mut conns).await;
    });
    assert_freed(&gw, baseline);
}

/// A TLS connection that got one answer and stays open (keep-alive).
async fn one_request_kept_alive(
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut tls = raw::try_connect(addr)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    // rustls may hold a write made as the handshake ends until a flush.
    tls.flush().await.map_err(|e| format!("flush: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !raw::response_complete(&buf) {
        match tls.read(&mut chunk).await {
            Ok(0) => {
                return Err(format!(
                    "closed before the answer: {:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if !buf.starts_with(b"HTTP/1.1 200") {
        return Err(format!("answer: {}", String::from_utf8_lossy(&buf)));
    }
    Ok(tls)
}
