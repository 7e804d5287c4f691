//! SIGTERM drains: in-flight requests finish, new connections are refused, exit code 0.
//! A second signal exits at once.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

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
        assert!(
            tokio::net::TcpStream::connect(gw.addr).await.is_err(),
            "new connections must be refused while draining"
        );
        tls.write_all(&BODY[10..]).await.unwrap();
        tls.flush().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    });
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"prediction\":\"setosa\""), "{response}");
    let status = gw
        .wait_exit(Duration::from_secs(15))
        .expect("process exits");
    assert_eq!(status.code(), Some(0), "logs:\n{}", gw.logs());
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
