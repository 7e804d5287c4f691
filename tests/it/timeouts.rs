//! Connections that say nothing, stall mid-handshake or sit idle are closed by their
//! timeouts; the connection cap refuses connections past it.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{Gateway, Options, h2_client, runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous upper bound for "the server closed it": far above the 1 s timeouts used here.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

fn short_timeouts(opts: Options) -> Options {
    opts.env("INFERGATE_SERVER__TLS_HANDSHAKE_TIMEOUT_MS", 1000)
        .env("INFERGATE_SERVER__HEADER_READ_TIMEOUT_MS", 1000)
        .env("INFERGATE_SERVER__KEEPALIVE_IDLE_TIMEOUT_MS", 1000)
}

/// Connects, sends `first`, and reports whether the server closed the connection.
async fn closed_by_server(addr: SocketAddr, first: &[u8]) -> bool {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    if !first.is_empty() {
        tcp.write_all(first).await.unwrap();
    }
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

/// A silent connection the server has accepted and kept (not closed within 300 ms).
async fn held_open(addr: SocketAddr) -> TcpStream {
    for _ in 0..50 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), tcp.read(&mut buf)).await {
            Err(_) => return tcp,
            Ok(_) => continue, // refused at the cap: an earlier connection still held a permit
        }
    }
    panic!("the server never kept a connection open");
}

#[test]
fn silent_and_stalled_tls_connections_are_closed() {
    let gw = Gateway::start(short_timeouts(Options::default()));
    let rt = runtime();
    rt.block_on(async {
        assert!(
            closed_by_server(gw.addr, b"").await,
            "silent TCP connection"
        );
        // A TLS record header announcing a ClientHello, then nothing.
        assert!(
            closed_by_server(gw.addr, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await,
            "stalled TLS handshake"
        );
        let timeouts = gw
            .metric("infergate_connection_timeouts_total{kind=\"tls_handshake\"}")
            .await;
        assert!(timeouts >= 2.0, "{timeouts}");
    });
}

#[test]
fn silent_and_half_sent_plaintext_connections_are_closed() {
    let gw = Gateway::start(short_timeouts(Options::default().plaintext()));
    let rt = runtime();
    rt.block_on(async {
        assert!(closed_by_server(gw.addr, b"").await, "silent connection");
        assert!(
            closed_by_server(gw.addr, b"GET /health HTTP/1.1\r\nhost: x\r\n").await,
            "half-sent request head"
        );
        assert!(
            closed_by_server(gw.addr, b"PRI * HTTP/2.0\r\n").await,
            "half-sent h2 preface"
        );
    });
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let gw = Gateway::start(short_timeouts(Options::default()));
    let rt = runtime();
    rt.block_on(async {
        let client = h2_client();
        let r = client.get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Wait well past the idle timeout, polling the counter from another connection.
        let mut idle = 0.0;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            idle = gw
                .metric("infergate_connection_timeouts_total{kind=\"idle\"}")
                .await;
            if idle >= 1.0 {
                break;
            }
        }
        assert!(idle >= 1.0, "no idle close counted");
        // The client reconnects transparently.
        let r = client.get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
}

#[test]
fn connections_past_the_cap_are_refused() {
    let gw = Gateway::start(
        Options::default()
            .env("INFERGATE_SERVER__MAX_CONNECTIONS", 2)
            .env("INFERGATE_SERVER__TLS_HANDSHAKE_TIMEOUT_MS", 60_000),
    );
    let rt = runtime();
    rt.block_on(async {
        // Two silent connections hold both permits. The readiness probe's own connection
        // may still hold one for a moment, so a connection counts only once it has stayed
        // open.
        let _a = held_open(gw.addr).await;
        let _b = held_open(gw.addr).await;
        assert!(closed_by_server(gw.addr, b"").await, "third connection");
    });
    drop(gw);
}
