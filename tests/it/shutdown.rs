//! SIGTERM drains: in-flight requests finish, new connections are refused, exit code 0.
//! A second signal exits at once.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::time::Duration;

use support::{Gateway, Options, raw, runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &[u8] = br#"{"features":[5.1,3.5,1.4,0.2]}"#;

fn slow_request_head() -> Vec<u8> {
    format!(
        "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes()
}

#[test]
fn sigterm_lets_a_slow_in_flight_request_finish_then_exits_zero() {
    let mut gw = Gateway::start(Options::default());
    let rt = runtime();
    let response = rt.block_on(async {
        let mut tls = raw::connect(gw.addr).await;
        tls.write_all(&slow_request_head()).await.unwrap();
        tls.write_all(&BODY[..10]).await.unwrap();
        tls.flush().await.unwrap();
        // The request is in flight (its body half sent) when the signal arrives.
        tokio::time::sleep(Duration::from_millis(200)).await;
        gw.signal("TERM");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Draining: the listener is closed, so a new connection is refused.
        // Asked of the kernel, not by a connect: the freed port may go to another test.
        assert!(
            !support::listening::process_listens_on(gw.child.id(), gw.addr.port()),
            "the listener must be closed while draining"
        );
        tls.write_all(&BODY[10..]).await.unwrap();
        tls.flush().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"prediction\":\"setosa\""), "{response}");
    gw.expect_clean_exit(Duration::from_secs(15));
    assert!(gw.logs().contains("draining"));
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut gw =
        Gateway::start(Options::default().env("INFERGATE_SHUTDOWN__DRAIN_TIMEOUT_MS", 120_000));
    let rt = runtime();
    rt.block_on(async {
        let mut tls = raw::connect(gw.addr).await;
        // A request that never completes keeps the drain waiting.
        tls.write_all(&slow_request_head()).await.unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        gw.signal("TERM");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(gw.child.try_wait().unwrap().is_none(), "still draining");
        gw.signal("INT");
        let status = gw
            .wait_exit(Duration::from_secs(10))
            .expect("exits at once");
        assert_eq!(status.code(), Some(130));
        drop(tls);
    });
}

/// Reads one whole response (head and `Content-Length` body) off `stream`.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(20), async {
        while !raw::response_complete(&buf) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed mid-response: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a whole response");
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn a_keep_alive_connection_gets_one_more_request_during_the_linger() {
    let mut gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_SHUTDOWN__LINGER_MS", 10_000)
            .env("INFERGATE_SHUTDOWN__DRAIN_TIMEOUT_MS", 30_000),
    );
    let rt = runtime();
    rt.block_on(async {
        let mut tls = raw::connect(gw.addr).await;
        tls.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let first = read_response(&mut tls).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(
            !first.to_ascii_lowercase().contains("connection: close"),
            "{first}"
        );

        // The connection is idle, kept alive, when the drain starts.
        gw.signal("TERM");
        assert!(gw.wait_log("draining", Duration::from_secs(10)));

        // The client sends its next request on it, as wrk would: answered, and told to
        // close.
        tls.write_all(&slow_request_head()).await.unwrap();
        tls.write_all(BODY).await.unwrap();
        tls.flush().await.unwrap();
        let second = read_response(&mut tls).await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        assert!(second.contains("\"prediction\":\"setosa\""), "{second}");
        assert!(
            second.to_ascii_lowercase().contains("connection: close"),
            "{second}"
        );
        // Then the server closes it.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest))
            .await
            .is_ok();
        assert!(closed, "the server closes the connection");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    });
    gw.expect_clean_exit(Duration::from_secs(20));
}

#[test]
fn a_silent_keep_alive_connection_is_closed_after_the_linger() {
    let mut gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_SHUTDOWN__LINGER_MS", 200)
            .env("INFERGATE_SHUTDOWN__DRAIN_TIMEOUT_MS", 120_000),
    );
    let rt = runtime();
    rt.block_on(async {
        let mut tls = raw::connect(gw.addr).await;
        tls.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let first = read_response(&mut tls).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        gw.signal("TERM");
        // Sending nothing more, the connection is closed by the server: the drain does not
        // wait for its deadline.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut rest))
            .await
            .is_ok();
        assert!(closed, "the server closes the connection");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    });
    gw.expect_clean_exit(Duration::from_secs(20));
    assert!(gw.logs().contains("drained; exiting"), "{}", gw.logs());
}
