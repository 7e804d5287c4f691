//! Socket activation: an inetd-style launcher holds the listening socket and starts the
//! real binary on it (fd 3, `LISTEN_FDS`, `LISTEN_PID`). A connection queued before the
//! start is answered; with `--idle-exit` the instance exits 0 when idle, and a connection
//! made after that waits in the launcher's backlog for the next instance.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::disallowed_types)] // a child process lives in wall-clock time

use crate::support;

use std::process::Stdio;
use std::thread::JoinHandle;
use std::time::Duration;

use support::launcher::Launcher;
use support::{Options, SETOSA, h1_client, runtime};

/// Sends one HTTPS prediction on a new connection, from its own thread: it waits in the
/// backlog until an instance accepts it.
fn predict_in_background(url: String) -> JoinHandle<(u16, String)> {
    std::thread::spawn(move || {
        runtime().block_on(async {
            let response = h1_client()
                .post(url)
                .json(&serde_json::json!({ "features": SETOSA }))
                .timeout(Duration::from_secs(90))
                .send()
                .await
                .expect("answered");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        })
    })
}

#[test]
fn queued_requests_are_answered_across_an_idle_exit() {
    let launcher = Launcher::bind();
    let url = format!("https://{}/predict", launcher.addr);

    let first = predict_in_background(url.clone());
    assert!(
        launcher.wait_queued(Duration::from_secs(10)),
        "the first connection is queued"
    );
    let mut a = launcher.launch(Options::default().tabular_only().arg("--idle-exit").arg(1));
    assert_eq!(a.addr, launcher.addr, "serves the inherited socket");
    let (status, body) = first.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("setosa"), "{body}");

    a.expect_clean_exit(Duration::from_secs(60));
    let logs = a.logs();
    assert!(logs.contains("socket activation"), "{logs}");
    assert!(logs.contains("server.idle_exit_s"), "{logs}");

    // No instance runs: the connection waits in the launcher's backlog for the next one.
    let second = predict_in_background(url);
    assert!(
        launcher.wait_queued(Duration::from_secs(10)),
        "the second connection is queued"
    );
    let mut b = launcher.launch(Options::default().tabular_only());
    let (status, body) = second.join().unwrap();
    assert_eq!(status, 200, "{body}");
    b.stop_cleanly(Duration::from_secs(30));
}

#[test]
fn listen_pid_naming_another_process_is_ignored() {
    let launcher = Launcher::bind();
    let gw = launcher.launch_for_another_pid(Options::default().tabular_only());
    assert_ne!(gw.addr, launcher.addr, "binds server.listen as usual");
    assert!(
        gw.logs().contains("LISTEN_PID does not name this process"),
        "{}",
        gw.logs()
    );
    // It serves on its own port, and leaves the launcher's socket alone.
    let status = runtime().block_on(async {
        h1_client()
            .get(gw.url("/ready"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    let _client = std::net::TcpStream::connect(launcher.addr).unwrap();
    assert!(launcher.wait_queued(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        launcher.take_queued(),
        "the connection stayed queued on the launcher's socket"
    );
}

#[test]
fn a_handed_over_fd_that_is_not_a_listening_socket_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let not_listening = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // A TCP socket bound but never listened on.
    let bound_only =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    bound_only
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    for (fd, expected) in [
        (
            std::os::fd::OwnedFd::from(file),
            "fd 3 is not a TCP stream socket",
        ),
        (
            std::os::fd::OwnedFd::from(not_listening),
            "fd 3 is not a TCP stream socket",
        ),
        (
            std::os::fd::OwnedFd::from(bound_only),
            "not a listening one",
        ),
    ] {
        let out = Launcher::command_with_fd3(fd)
            .arg("--config-dir")
            .arg(dir.path())
            .env("INFERGATE_SECRETS__DIR", dir.path().join("no-secrets"))
            .env("INFERGATE_IMAGE__BUNDLED", "false")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn standby_accepts_on_the_inherited_socket_only_after_activation() {
    let launcher = Launcher::bind();
    let url = format!("https://{}/predict", launcher.addr);
    let queued = predict_in_background(url);
    assert!(launcher.wait_queued(Duration::from_secs(10)));
    let mut gw = launcher.launch(Options::default().tabular_only().standby());
    // Ready (checked over its check socket), yet the connection is still in the backlog.
    assert!(
        launcher.wait_queued(Duration::ZERO),
        "nothing accepts on the inherited socket in standby"
    );
    assert!(!queued.is_finished());
    gw.signal("USR2");
    let (status, body) = queued.join().unwrap();
    assert_eq!(status, 200, "{body}");
    // The log line reaches the test through a pipe read by another thread: wait for it.
    assert!(
        gw.wait_log("activated: listening on", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );
    gw.stop_cleanly(Duration::from_secs(30));
}
