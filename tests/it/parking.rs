//! Idle HTTP/1.1 keep-alive connections park (`server.keepalive_park_after_ms`): hyper
//! and its buffers are let go, and the connection comes back for its client's next
//! request, whatever it is. A parked connection outlives hyper's header timer, which
//! would otherwise close an idle keep-alive connection; the idle timeout still closes it.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::raw::{connect, read_response, response_statuses, with_suite_key};
use crate::support::{Gateway, Options, runtime, wait_for};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
const PREDICT_BODY: &[u8] = b"{\"features\": [5.1, 3.5, 1.4, 0.2]}";

/// Parks after 300 ms; hyper's header timer would close an idle connection at 2 s.
fn parking(idle_timeout_ms: u64) -> Options {
    Options::default()
        .tabular_only()
        .env("INFERGATE_SERVER__KEEPALIVE_PARK_AFTER_MS", 300)
        .env("INFERGATE_SERVER__HEADER_READ_TIMEOUT_MS", 2_000)
        .env(
            "INFERGATE_SERVER__KEEPALIVE_IDLE_TIMEOUT_MS",
            idle_timeout_ms,
        )
}

async fn parked(gw: &Gateway) -> f64 {
    gw.metric("infergate_connections_parked ").await
}

/// Waits (up to 10 s) until `count` connections are parked; `what` names the wait.
async fn until_parked(gw: &Gateway, count: f64, what: &str) {
    wait_for(what, Duration::from_secs(10), async || {
        parked(gw).await == count
    })
    .await;
}

/// Writes `request` (the suite's key added) and reads one response; its status.
async fn ask(tls: &mut TlsStream<TcpStream>, request: &[u8]) -> Vec<u16> {
    tls.write_all(&with_suite_key(request)).await.unwrap();
    response_statuses(&read_response(tls, Duration::from_secs(10)).await)
}

/// A connection served one `/health`, then left until it parked.
async fn served_then_parked(gw: &Gateway) -> TlsStream<TcpStream> {
    let mut tls = connect(gw.addr).await;
    assert_eq!(ask(&mut tls, HEALTH).await, [200]);
    until_parked(gw, 1.0, "the connection to park").await;
    tls
}

#[test]
fn a_parked_connection_serves_its_next_requests_past_the_header_timeout() {
    let gw = Gateway::start(parking(30_000));
    let rt = runtime();
    rt.block_on(async {
        let mut tls = served_then_parked(&gw).await;
        // Past hyper's 2 s header timer, which an unparked idle connection would not
        // outlive.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(parked(&gw).await, 1.0, "still parked, not closed");

        // A request whose body follows its head a moment later, in two parts.
        let head = format!(
            "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            PREDICT_BODY.len()
        );
        tls.write_all(&with_suite_key(head.as_bytes()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (a, b) = PREDICT_BODY.split_at(10);
        tls.write_all(a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tls.write_all(b).await.unwrap();
        let answer = read_response(&mut tls, Duration::from_secs(10)).await;
        assert_eq!(
            response_statuses(&answer),
            [200],
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert!(String::from_utf8_lossy(&answer).contains("\"prediction\":\"setosa\""));
        assert_eq!(parked(&gw).await, 0.0, "served, so no longer parked");

        // Parked again; then two requests in one write (pipelined), both answered.
        until_parked(&gw, 1.0, "the connection to park again").await;
        let two = [with_suite_key(HEALTH), with_suite_key(HEALTH)].concat();
        tls.write_all(&two).await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let mut chunk = [0u8; 4096];
            while response_statuses(&got).len() < 2 {
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        assert_eq!(response_statuses(&got), [200, 200]);

        // The client leaves while parked: the gauge comes back down.
        until_parked(&gw, 1.0, "the third park").await;
        drop(tls);
        until_parked(&gw, 0.0, "the parked count to fall").await;
    });
}

#[test]
fn a_parked_connection_closes_at_the_idle_timeout() {
    let gw = Gateway::start(parking(1_500));
    let rt = runtime();
    rt.block_on(async {
        let mut tls = served_then_parked(&gw).await;
        // Closed by the server: its TLS close_notify, then the end of the stream.
        let mut chunk = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the parked connection was not closed");
        assert_eq!(parked(&gw).await, 0.0);
        let idle = gw
            .metric("infergate_connection_timeouts_total{kind=\"idle\"}")
            .await;
        assert!(idle >= 1.0, "the close was not counted as idle: {idle}");
    });
}
