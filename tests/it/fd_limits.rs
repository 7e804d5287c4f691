//! The open-file limit, as an operator meets it: a gateway started under a low soft limit
//! raises it to the hard one and serves past it; one whose hard limit is low too serves a
//! new client anyway, by closing idle keep-alive connections (longest idle first), and
//! logs the failed accepts once a second with a count, not once each.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use nix::sys::resource::{Resource, setrlimit};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::raw::{connect, read_response, response_complete, with_suite_key};
use crate::support::{Gateway, Options, bin, raise_fd_limit, runtime};

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";

/// The gateway's command, started with the open-file limit `soft`/`hard`.
#[allow(unsafe_code)]
fn with_nofile(soft: u64, hard: u64) -> Command {
    let mut cmd = Command::new(bin());
    // SAFETY: between fork and exec the closure only calls setrlimit(2), which allocates
    // nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(std::io::Error::from)
        });
    }
    cmd
}

/// `/health` on `tls`, kept open afterwards: whether it answered 200 (the callers bound
/// the wait more tightly than the read does).
async fn health(tls: &mut TlsStream<TcpStream>) -> bool {
    if tls.write_all(&with_suite_key(HEALTH)).await.is_err() {
        return false;
    }
    let buf = read_response(tls, Duration::from_secs(30)).await;
    response_complete(&buf) && buf.starts_with(b"HTTP/1.1 200")
}

/// Opens `n` TLS connections one after another, each asking `/health` once and then kept
/// open and idle; returns them and how many were answered before the first that was not
/// (within 5 s).
async fn idle_connections(gw: &Gateway, n: usize) -> (Vec<TlsStream<TcpStream>>, usize) {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        let answered = tokio::time::timeout(Duration::from_secs(5), async {
            let mut tls = connect(gw.addr).await;
            health(&mut tls).await.then_some(tls)
        })
        .await;
        match answered {
            Ok(Some(tls)) => open.push(tls),
            _ => break,
        }
    }
    let answered = open.len();
    (open, answered)
}

/// The gateway's log lines that contain `needle`.
fn log_lines(gw: &Gateway, needle: &str) -> Vec<String> {
    gw.logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn small_gateway() -> Options {
    // No image model: fewer files held while it loads. hyper closes a keep-alive
    // connection that sends no next request within the header timeout: a minute here, so
    // that only the gateway's own room-making closes one during the test.
    Options::default()
        .tabular_only()
        .env("INFERGATE_SERVER__HEADER_READ_TIMEOUT_MS", 60_000)
}

#[test]
fn a_low_soft_limit_is_raised_to_the_hard_one() {
    // This process holds 400 client sockets too.
    raise_fd_limit();
    let gw = Gateway::start_with(with_nofile(256, 4096), small_gateway());
    assert!(
        gw.wait_log("open-file limit raised to 4096", Duration::from_secs(5)),
        "no INFO line for the raise: {}",
        gw.logs()
    );
    runtime().block_on(async {
        let (open, answered) = idle_connections(&gw, 400).await;
        assert_eq!(answered, 400, "{}", gw.logs());
        let active = gw.metric("infergate_connections_active").await;
        assert!(active >= 400.0, "{active} connections open");
        drop(open);
    });
    // max_connections' 10,000 is past 4096: said once, with both numbers.
    let warned = log_lines(&gw, "below what server.max_connections needs");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(
        warned[0].contains("10256") && warned[0].contains("4096"),
        "{warned:?}"
    );
}

#[test]
fn at_the_limit_idle_connections_make_room_for_a_new_client() {
    raise_fd_limit();
    let gw = Gateway::start_with(with_nofile(256, 256), small_gateway());
    runtime().block_on(async {
        // 400 connections under a limit of 256: past it, each new one is accepted by
        // closing the connections idle longest; every one is answered.
        let (open, answered) = idle_connections(&gw, 400).await;
        assert_eq!(answered, 400, "{}", gw.logs());
        // A new client, with every descriptor taken: answered within a second.
        let mut tls = tokio::time::timeout(Duration::from_secs(1), connect(gw.addr))
            .await
            .expect("a new client's handshake within 1 s");
        let answered = tokio::time::timeout(Duration::from_secs(1), health(&mut tls)).await;
        assert_eq!(answered, Ok(true), "a new client's /health within 1 s");
        let reclaimed = gw.metric("infergate_connections_reclaimed_total").await;
        assert!(reclaimed >= 144.0, "{reclaimed} idle connections closed");
        drop(open);
    });
    // The failed accepts: a line a second at most, each with its count.
    let lines = log_lines(&gw, "accept failed");
    assert!(
        !lines.is_empty() && lines.len() <= 5,
        "{} accept lines: {lines:#?}",
        lines.len()
    );
    assert!(lines.iter().all(|l| l.contains("\"count\":")), "{lines:#?}");
}

#[test]
fn strict_refuses_a_limit_that_cannot_hold_max_connections() {
    let out = with_nofile(256, 256)
        .args(["--strict", "--listen", "127.0.0.1:0"])
        .env("INFERGATE_TLS__ENABLED", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open-file limit (256) cannot hold server.max_connections (10000)"),
        "{stderr}"
    );
    // check-config says the same before a start.
    let out = with_nofile(256, 256)
        .args(["check-config", "--strict"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open-file limit: 256 at start")
            && stderr.contains("server.max_connections 10000 needs 10256"),
        "{stderr}"
    );
    let out = with_nofile(256, 4096).arg("check-config").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open-file limit: 4096 at start"),
        "{stderr}"
    );
}
