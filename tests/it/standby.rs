//! Standby: the process loads, warms up and serves its check socket, but opens no public
//! listener until SIGUSR2. A rollout starts the new version in standby beside the old one
//! on the same port (SO_REUSEPORT), checks it over its check socket, activates it, and
//! drains the old one.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::disallowed_types)] // a child process lives in wall-clock time

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::{Gateway, Options, bin, free_port, h1_client, listening, runtime, unix};

const SMOKE: &str = r#"{"features":[5.1,3.5,1.4,0.2]}"#;

/// A running peer on `addr` as the old version would be: an `SO_REUSEPORT` listener (it
/// accepts nothing; a standby instance only needs to see that someone listens).
fn peer(addr: std::net::SocketAddr) -> socket2::Socket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(16).unwrap();
    socket
}

#[test]
fn standby_listens_only_after_sigusr2() {
    let addr = free_port();
    let old = peer(addr);
    let mut gw = Gateway::start(Options::default().tabular_only().standby().listen(addr));
    let socket = gw.check_socket.clone().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let ready = unix::request(&socket, "GET", "/ready", None).await.unwrap();
        assert_eq!(ready.status, 200, "ready while in standby: {}", ready.body);
        assert_eq!(ready.json()["listening"], false);
    });
    drop(old);
    // Not a refused connect: the freed port may go to another test's listener.
    assert!(
        !listening::process_listens_on(gw.child.id(), addr.port()),
        "no public listener in standby"
    );
    gw.signal("USR2");
    assert!(
        gw.wait_log("activated: listening on", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    rt.block_on(async {
        let ready = h1_client()
            .get(format!("https://{addr}/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let v: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(v["listening"], true, "{v}");
    });
    // A second SIGUSR2 changes nothing.
    gw.signal("USR2");
    assert!(gw.wait_log("already listening", Duration::from_secs(10)));
    gw.stop_cleanly(Duration::from_secs(30));
}

#[test]
fn standby_with_nobody_on_the_port_opens_it_at_once() {
    // A restart of the last instance (restart: always) must not wait for a SIGUSR2.
    let addr = free_port();
    let mut gw = Gateway::start(Options::default().tabular_only().standby().listen(addr));
    assert!(
        gw.wait_log("nothing else listens on this port", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    let rt = runtime();
    rt.block_on(async {
        let ready = h1_client()
            .get(format!("https://{addr}/ready"))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(v["listening"], true, "{v}");
    });
    gw.stop_cleanly(Duration::from_secs(30));
}

#[test]
fn sigterm_in_standby_exits_zero_without_ever_listening() {
    let addr = free_port();
    let _old = peer(addr);
    let mut gw = Gateway::start(Options::default().tabular_only().standby().listen(addr));
    gw.stop_cleanly(Duration::from_secs(30));
    assert!(!gw.logs().contains("activated"), "{}", gw.logs());
}

#[test]
fn a_rollout_beside_the_running_version_on_one_port() {
    let addr = free_port();
    let mut old = Gateway::start(Options::default().tabular_only().listen(addr));
    let mut new = Gateway::start(Options::default().tabular_only().standby().listen(addr));
    let socket = new.check_socket.clone().unwrap();

    // The deploy script's gate, over the new instance's own socket: ready, and a smoke
    // prediction answered.
    for args in [
        vec!["--url", "http://localhost/ready"],
        vec!["--url", "http://localhost/predict", "--data", SMOKE],
    ] {
        let out = Command::new(bin())
            .arg("healthcheck")
            .arg("--socket")
            .arg(&socket)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    new.signal("USR2");
    assert!(new.wait_log("activated: listening on", Duration::from_secs(10)));
    old.stop_cleanly(Duration::from_secs(30));

    // The port is the new instance's alone now.
    for _ in 0..5 {
        assert_eq!(smoke(addr), 200);
    }
    new.stop_cleanly(Duration::from_secs(30));
}

/// The smoke prediction's status, asked of whoever serves `addr`.
fn smoke(addr: std::net::SocketAddr) -> reqwest::StatusCode {
    runtime().block_on(async {
        h1_client()
            .post(format!("https://{addr}/predict"))
            .header("content-type", "application/json")
            .body(SMOKE)
            .send()
            .await
            .unwrap()
            .status()
    })
}

#[test]
fn beside_a_serving_instance_the_listener_opens_only_once_ready() {
    // A Swarm rolling update starts the new task beside the old one, not in standby: while
    // it warms up (a slow model here: 3 s), the port must stay the old one's alone.
    let addr = free_port();
    let old = peer(addr);
    let mut gw = Gateway::start(
        Options::default()
            .tabular_only()
            .check_socket()
            .unready()
            .listen(addr)
            .env("INFERGATE_MODEL__FORWARD_DELAY_MS", 3000),
    );
    // Said once the process has looked at the port, which `unready()` does not wait for.
    assert!(
        gw.wait_log(
            "the public listener opens once this one is ready",
            Duration::from_secs(10)
        ),
        "{}",
        gw.logs()
    );
    let socket = gw.check_socket.clone().unwrap();
    let rt = runtime();
    let ready = rt
        .block_on(unix::request(&socket, "GET", "/ready", None))
        .unwrap();
    assert_eq!(ready.status, 503, "warming up: {}", ready.body);
    assert!(
        !listening::process_listens_on(gw.child.id(), addr.port()),
        "a cold instance took its share of the port"
    );
    assert!(
        gw.wait_log(
            "ready beside the serving instance: listening on",
            Duration::from_secs(30)
        ),
        "{}",
        gw.logs()
    );
    assert!(listening::process_listens_on(gw.child.id(), addr.port()));
    drop(old);
    assert_eq!(smoke(addr), 200);
    gw.stop_cleanly(Duration::from_secs(30));
}
