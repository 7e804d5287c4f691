//! API keys end to end, over HTTP/1.1 and HTTP/2: no key, a wrong key, the wrong scope, a
//! key revoked or rotated by a reload (SIGHUP, or the file changing), a key made by
//! `infergate hash-key`, the open default, and a key file that cannot be used.
// Tests: a failed unwrap is a failed test. Waiting on a real child process is wall-clock
// time, not the paused tokio clock.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infergate::auth::keys;
use infergate::auth::{Scope, Scopes};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use support::{Gateway, Options, SETOSA, bare_builder, runtime};

const APP: &str = "ig_app_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OPS: &str = "ig_ops_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const NEW: &str = "ig_new_cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

fn predict_key(name: &str, key: &str) -> String {
    keys::line(name, Scopes::of(&[Scope::Predict]), key) + "\n"
}

fn admin_key(name: &str, key: &str) -> String {
    keys::line(name, Scopes::of(&[Scope::Admin]), key) + "\n"
}

/// Keyless clients: each request says which key it presents, if any.
fn clients() -> [(&'static str, Client); 2] {
    [
        ("h1", bare_builder().http1_only().build().unwrap()),
        (
            "h2",
            bare_builder().http2_prior_knowledge().build().unwrap(),
        ),
    ]
}

fn keyed_gateway(file: &Path, opts: Options) -> Gateway {
    Gateway::start(
        opts.tabular_only()
            .env("INFERGATE_AUTH__KEYS_PATH", file.display())
            .env("INFERGATE_LOG__LEVEL", "infergate=debug,info"),
    )
}

fn predict(gw: &Gateway, client: &Client) -> RequestBuilder {
    client
        .post(gw.url("/predict"))
        .json(&json!({ "features": SETOSA }))
}

async fn error_code(r: Response) -> (u16, Option<String>, String) {
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let v: Value = r.json().await.unwrap();
    let code = v["error"]["code"].as_str().unwrap_or("").to_owned();
    assert!(v["error"]["message"].is_string(), "{v}");
    (status, challenge, code)
}

/// Polls `check` for up to 10 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(r: RequestBuilder) -> u16 {
    r.send().await.unwrap().status().as_u16()
}

#[test]
fn no_key_a_wrong_key_and_the_wrong_scope_are_refused_over_h1_and_h2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_keys");
    std::fs::write(&file, predict_key("app", APP) + &admin_key("ops", OPS)).unwrap();
    let gw = keyed_gateway(&file, Options::default());
    runtime().block_on(async {
        for (proto, c) in clients() {
            // No key: 401 with the Bearer challenge.
            let (s, challenge, code) = error_code(predict(&gw, &c).send().await.unwrap()).await;
            assert_eq!((s, code.as_str()), (401, "unauthorized"), "{proto}");
            assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="infergate""#));
            // A wrong key, or one sent the wrong way: 401 invalid_token.
            for wrong in [
                predict(&gw, &c).bearer_auth("ig_not_a_key"),
                predict(&gw, &c).header("authorization", format!("Basic {APP}")),
                predict(&gw, &c).header("x-api-key", &APP[..APP.len() - 1]),
            ] {
                let (s, challenge, code) = error_code(wrong.send().await.unwrap()).await;
                assert_eq!((s, code.as_str()), (401, "unauthorized"), "{proto}");
                assert!(challenge.unwrap().contains(r#"error="invalid_token""#));
            }
            // The right key, either way.
            assert_eq!(
                status(predict(&gw, &c).bearer_auth(APP)).await,
                200,
                "{proto}"
            );
            assert_eq!(status(predict(&gw, &c).header("x-api-key", APP)).await, 200);
            // A predict key on the admin routes: 403 insufficient_scope.
            for path in ["/metrics", "/stats"] {
                let r = c.get(gw.url(path)).bearer_auth(APP).send().await.unwrap();
                let (s, challenge, code) = error_code(r).await;
                assert_eq!((s, code.as_str()), (403, "forbidden"), "{proto} {path}");
                assert!(challenge.unwrap().contains(r#"scope="admin""#));
                let r = c.get(gw.url(path)).bearer_auth(OPS).send().await.unwrap();
                assert_eq!(r.status(), 200, "{proto} {path}");
                let r = c.get(gw.url(path)).send().await.unwrap();
                assert_eq!(r.status(), 401, "{proto} {path}");
            }
            // The model repository API is admin's too (its refusals are the OIP's shape).
            let index = gw.url("/v2/repository/index");
            assert_eq!(
                status(c.post(&index).bearer_auth(APP)).await,
                403,
                "{proto}"
            );
            assert_eq!(status(c.post(&index)).await, 401, "{proto}");
            assert_eq!(
                status(c.post(&index).bearer_auth(OPS)).await,
                200,
                "{proto}"
            );
            // An admin key predicts too.
            assert_eq!(status(predict(&gw, &c).bearer_auth(OPS)).await, 200);
            // Health and readiness stay open.
            for path in ["/health", "/ready"] {
                assert_eq!(status(c.get(gw.url(path))).await, 200, "{proto} {path}");
            }
            // An unknown path tells a stranger nothing; a caller with a key gets the 404.
            assert_eq!(status(c.get(gw.url("/admin"))).await, 401);
            assert_eq!(status(c.get(gw.url("/admin")).bearer_auth(APP)).await, 404);
        }
        // Refusals are counted by reason.
        let metrics = bare_builder().build().unwrap();
        let text = metrics
            .get(gw.url("/metrics"))
            .bearer_auth(OPS)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let count = |reason: &str| {
            let series = format!("infergate_auth_refused_total{{reason=\"{reason}\"}} ");
            support::metric_in(&text, &series).unwrap_or(-1.0)
        };
        assert_eq!(count("missing"), 2.0 * 5.0);
        assert_eq!(count("invalid"), 2.0 * 3.0);
        assert_eq!(count("forbidden"), 2.0 * 3.0);
        assert!(text.contains("infergate_api_keys 2"), "{text}");
    });
    // The key's name is in the request's span; the key itself is nowhere in the log.
    let done = gw
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request done" && v["span"]["key"] == "app")
        .count();
    assert!(done >= 4, "{}", gw.logs());
    assert!(!gw.logs().contains(APP) && !gw.logs().contains(OPS));
}

#[test]
fn a_reload_revokes_and_rotates_keys_at_once_on_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_keys");
    std::fs::write(&file, predict_key("app", APP)).unwrap();
    // A long look interval: only SIGHUP reloads within this test's first part.
    let gw = keyed_gateway(
        &file,
        Options::default().env("INFERGATE_AUTH__RELOAD_INTERVAL_MS", 3_600_000),
    );
    runtime().block_on(async {
        let clients = clients();
        for (_, c) in &clients {
            assert_eq!(status(predict(&gw, c).bearer_auth(APP)).await, 200);
        }
        // Rotate: APP revoked, NEW added; written to a temp file and renamed in, as a
        // secret store does.
        let next = dir.path().join("api_keys.next");
        std::fs::write(&next, predict_key("new", NEW)).unwrap();
        std::fs::rename(&next, &file).unwrap();
        gw.signal("HUP");
        assert!(
            gw.wait_log("API keys reloaded", Duration::from_secs(10)),
            "{}",
            gw.logs()
        );
        // The same (kept-alive) connections see the change on their next request.
        for (proto, c) in &clients {
            assert_eq!(
                status(predict(&gw, c).bearer_auth(APP)).await,
                401,
                "{proto}"
            );
            assert_eq!(
                status(predict(&gw, c).bearer_auth(NEW)).await,
                200,
                "{proto}"
            );
        }
        // A broken file is refused with an ERROR; the keys in force stay.
        std::fs::write(&file, "new predict sha256:nothex\n").unwrap();
        gw.signal("HUP");
        assert!(
            gw.wait_log("the API key file cannot be used", Duration::from_secs(10)),
            "{}",
            gw.logs()
        );
        for (_, c) in &clients {
            assert_eq!(status(predict(&gw, c).bearer_auth(NEW)).await, 200);
        }
    });
}

#[test]
fn a_changed_key_file_is_taken_up_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_keys");
    std::fs::write(&file, predict_key("app", APP)).unwrap();
    let gw = keyed_gateway(
        &file,
        Options::default().env("INFERGATE_AUTH__RELOAD_INTERVAL_MS", 100),
    );
    runtime().block_on(async {
        let [(_, h1), (_, h2)] = clients();
        assert_eq!(status(predict(&gw, &h2).bearer_auth(APP)).await, 200);
        std::fs::write(&file, predict_key("new", NEW)).unwrap();
        eventually("the rotation is taken up", async || {
            status(predict(&gw, &h2).bearer_auth(NEW)).await == 200
        })
        .await;
        assert_eq!(status(predict(&gw, &h1).bearer_auth(APP)).await, 401);
        assert_eq!(status(predict(&gw, &h2).bearer_auth(APP)).await, 401);
    });
}

/// `infergate hash-key` prints the line for the file on stdout and the key, once, on
/// stderr; `--key-stdin` hashes a key given to it.
#[test]
fn hash_key_prints_the_line_that_lets_its_key_in() {
    let made = Command::new(support::bin())
        .args([
            "hash-key",
            "--name",
            "cli-made",
            "--scopes",
            "predict,admin",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let line = String::from_utf8(made.stdout).unwrap();
    let stderr = String::from_utf8(made.stderr).unwrap();
    let key = stderr.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(key.starts_with("ig_") && key.len() == 67, "{stderr}");
    assert!(line.starts_with("cli-made predict,admin sha256:"), "{line}");
    assert!(!line.contains(&key), "the line holds the hash, not the key");

    let mut given = Command::new(support::bin())
        .args(["hash-key", "--name", "given", "--key-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    given
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{NEW}\n").as_bytes())
        .unwrap();
    let given = given.wait_with_output().unwrap();
    assert!(given.status.success());
    assert_eq!(
        String::from_utf8(given.stdout).unwrap(),
        predict_key("given", NEW)
    );

    let bad = Command::new(support::bin())
        .args(["hash-key", "--name", "x", "--scopes", "root"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_keys");
    std::fs::write(&file, line).unwrap();
    let gw = keyed_gateway(&file, Options::default());
    runtime().block_on(async {
        for (_, c) in clients() {
            let r = c.get(gw.url("/metrics")).bearer_auth(&key).send().await;
            assert_eq!(r.unwrap().status(), 200);
            assert_eq!(status(predict(&gw, &c).bearer_auth(&key)).await, 200);
        }
    });
}

#[test]
fn without_a_key_file_loopback_reaches_every_route_with_one_warning() {
    let gw = Gateway::start(Options::default().tabular_only());
    runtime().block_on(async {
        for (_, c) in clients() {
            assert_eq!(status(predict(&gw, &c)).await, 200);
            assert_eq!(status(c.get(gw.url("/metrics"))).await, 200);
            assert_eq!(status(c.get(gw.url("/stats"))).await, 200);
        }
    });
    let warnings = gw
        .logs()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("no API key file"))
        .count();
    assert_eq!(warnings, 1, "{}", gw.logs());
}

#[test]
fn a_key_file_that_cannot_be_used_stops_the_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_keys");
    std::fs::write(&file, predict_key("app", APP) + "ops admin sha256:short\n").unwrap();
    let out = Command::new(support::bin())
        .arg("--config-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("INFERGATE_AUTH__KEYS_PATH", &file)
        .env("INFERGATE_SECRETS__DIR", dir.path().join("no-secrets"))
        .env("INFERGATE_IMAGE__BUNDLED", "false")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("api_keys"),
        "{stderr}"
    );
}
