//! TLS certificate reload: SIGHUP, or a changed certificate file, puts a new pair in force
//! for new handshakes while an established connection keeps working; a pair that does not
//! belong together is refused with an ERROR and the certificate in force stays.
// Tests: a failed unwrap is a failed test. Waiting on a real child process is wall-clock
// time, not the paused tokio clock.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Gateway, Options, raw, runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fresh self-signed pair for localhost: (certificate PEM, key PEM, certificate DER).
fn pair() -> (String, String, Vec<u8>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (
        c.cert.pem(),
        c.signing_key.serialize_pem(),
        c.cert.der().to_vec(),
    )
}

fn install(dir: &Path, cert: &str, key: &str) {
    // Written aside and renamed in, as a certificate manager does: a look never sees half.
    for (name, pem) in [("cert.pem", cert), ("key.pem", key)] {
        let next = dir.join(format!("{name}.next"));
        std::fs::write(&next, pem).unwrap();
        std::fs::rename(&next, dir.join(name)).unwrap();
    }
}

fn gateway(dir: &Path, interval_ms: u64) -> Gateway {
    Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_TLS__CERT_PATH", dir.join("cert.pem").display())
            .env("INFERGATE_TLS__KEY_PATH", dir.join("key.pem").display())
            .env("INFERGATE_TLS__RELOAD_INTERVAL_MS", interval_ms),
    )
}

/// The leaf certificate a new handshake gets.
async fn served(gw: &Gateway) -> Vec<u8> {
    let tls = raw::connect(gw.addr).await;
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Waits (up to 10 s) until new handshakes get the certificate `der`.
async fn until_served(gw: &Gateway, der: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(gw).await != der {
        assert!(Instant::now() < deadline, "{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One keep-alive request on an open connection: its status.
async fn health_on<S: AsyncReadExt + AsyncWriteExt + Unpin>(tls: &mut S) -> u16 {
    tls.write_all(&raw::with_suite_key(
        b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n",
    ))
    .await
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !raw::response_complete(&buf) {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    raw::response_statuses(&buf)[0]
}

#[test]
fn sighup_puts_a_new_pair_in_force_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_der) = pair();
    install(dir.path(), &a_cert, &a_key);
    // Looks far apart: only SIGHUP reloads here.
    let gw = gateway(dir.path(), 3_600_000);
    runtime().block_on(async {
        assert_eq!(served(&gw).await, a_der);
        let mut open = raw::connect(gw.addr).await;
        assert_eq!(health_on(&mut open).await, 200);

        let (b_cert, b_key, b_der) = pair();
        install(dir.path(), &b_cert, &b_key);
        assert_eq!(served(&gw).await, a_der, "not before the reload");
        gw.signal("HUP");
        assert!(
            gw.wait_log("TLS certificate reloaded", Duration::from_secs(10)),
            "{}",
            gw.logs()
        );
        assert_eq!(served(&gw).await, b_der, "new handshakes get the new pair");
        assert_eq!(
            health_on(&mut open).await,
            200,
            "the open connection carries on"
        );

        // A key that is not the certificate's: refused, B stays.
        let (_, c_key, _) = pair();
        install(dir.path(), &b_cert, &c_key);
        gw.signal("HUP");
        assert!(
            gw.wait_log(
                "the new TLS certificate cannot be used",
                Duration::from_secs(10)
            ),
            "{}",
            gw.logs()
        );
        assert_eq!(served(&gw).await, b_der);
        // Not PEM at all: refused too.
        install(dir.path(), "not a certificate", &b_key);
        gw.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while gw
            .logs()
            .matches("the new TLS certificate cannot be used")
            .count()
            < 2
        {
            assert!(Instant::now() < deadline, "{}", gw.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(served(&gw).await, b_der);
        assert_eq!(health_on(&mut open).await, 200);
    });
}

#[test]
fn a_renewed_certificate_file_is_taken_up_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_der) = pair();
    install(dir.path(), &a_cert, &a_key);
    let gw = gateway(dir.path(), 100);
    runtime().block_on(async {
        assert_eq!(served(&gw).await, a_der);
        let (b_cert, b_key, b_der) = pair();
        install(dir.path(), &b_cert, &b_key);
        until_served(&gw, &b_der).await;
    });
}

/// The pair given as secret files (`INFERGATE_TLS__CERT_FILE`, as Docker secrets are): the
/// files the values were read from are the ones watched.
#[test]
fn a_renewed_secret_file_is_taken_up_too() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_der) = pair();
    install(dir.path(), &a_cert, &a_key);
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env(
                "INFERGATE_TLS__CERT_FILE",
                dir.path().join("cert.pem").display(),
            )
            .env(
                "INFERGATE_TLS__KEY_FILE",
                dir.path().join("key.pem").display(),
            )
            .env("INFERGATE_TLS__RELOAD_INTERVAL_MS", 100),
    );
    runtime().block_on(async {
        assert_eq!(served(&gw).await, a_der);
        let (b_cert, b_key, b_der) = pair();
        install(dir.path(), &b_cert, &b_key);
        until_served(&gw, &b_der).await;
    });
}
