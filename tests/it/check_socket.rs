//! The check socket: the same routes over a Unix-domain socket (HTTP/1.1 and h2c), mode
//! 0600, outside the public connection cap, a stale file replaced at start, serving through the drain (`/ready` turns 503
//! there), and the file removed on exit.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use support::{Gateway, Options, raw, runtime, unix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &str = r#"{"features":[5.1,3.5,1.4,0.2]}"#;

#[test]
fn serves_the_gateway_routes_over_a_unix_socket() {
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .check_socket()
            .env("INFERGATE_SERVER__MAX_CONNECTIONS", 1),
    );
    let path = gw.check_socket.clone().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    runtime().block_on(async {
        // The public listener's one connection is taken (once the readiness probe's has
        // closed); the check socket has a cap of its own.
        let mut public = None;
        for _ in 0..100 {
            if let Ok(tls) = raw::try_connect(gw.addr).await {
                public = Some(tls);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _public = public.expect("the one public connection");
        assert!(
            raw::try_connect(gw.addr).await.is_err(),
            "the public cap is full"
        );
        let ready = unix::request(&path, "GET", "/ready", None).await.unwrap();
        assert_eq!(ready.status, 200, "{}", ready.body);
        let v = ready.json();
        assert_eq!(v["listening"], true, "{v}");
        assert_eq!(v["draining"], false, "{v}");

        let predicted = unix::request(&path, "POST", "/predict", Some(BODY))
            .await
            .unwrap();
        assert_eq!(predicted.status, 200, "{}", predicted.body);
        assert_eq!(predicted.json()["prediction"], "setosa");

        let stats = unix::request(&path, "GET", "/stats", None).await.unwrap();
        assert_eq!(stats.json()["listening"], true);

        // h2c by its preface, as on a plaintext listener.
        let health = unix::request_h2(&path, "/health").await.unwrap();
        assert_eq!(health.status, 200, "{}", health.body);
    });
}

#[test]
fn a_stale_file_is_replaced_the_drain_is_watchable_and_the_file_goes_on_exit() {
    // A config dir and socket path of our own, with a stale socket file already there.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_SERVER__CHECK_SOCKET", path.display())
            .env("INFERGATE_SHUTDOWN__DRAIN_TIMEOUT_MS", 60_000),
    );
    assert!(
        gw.logs().contains("removed a stale check socket"),
        "{}",
        gw.logs()
    );
    let rt = runtime();
    rt.block_on(async {
        // A request in flight (body half sent) keeps the drain going.
        let mut tls = raw::connect(gw.addr).await;
        let head = format!(
            "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            BODY.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(&BODY.as_bytes()[..10]).await.unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        gw.signal("TERM");
        assert!(gw.wait_log("draining", Duration::from_secs(10)));

        // The draining instance still answers on its check socket: not ready, not listening.
        let ready = unix::request(&path, "GET", "/ready", None).await.unwrap();
        assert_eq!(ready.status, 503, "{}", ready.body);
        let v = ready.json();
        assert_eq!(v["draining"], true, "{v}");
        assert_eq!(v["listening"], false, "{v}");
        assert_eq!(
            ready.headers.get("connection").unwrap(),
            "close",
            "answers during the drain close their connection"
        );

        tls.write_all(&BODY.as_bytes()[10..]).await.unwrap();
        tls.flush().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
        let response = String::from_utf8_lossy(&out);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    });
    gw.expect_clean_exit(Duration::from_secs(30));
    assert!(!path.exists(), "the check socket file is removed on exit");
}
