//! The binary's configuration surface: errors name their source and exit 2 before
//! anything binds; `print-config` never shows a secret; `healthcheck` exit codes.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::process::{Command, Output};

use support::{Gateway, Options, bin};

const SMOKE: &str = r#"{"features":[5.1,3.5,1.4,0.2]}"#;

fn run(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("--config-dir")
        .arg(dir)
        .args(args)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env("INFERGATE_SECRETS__DIR", dir.join("secrets"));
    cmd.output().expect("run infergate")
}

#[test]
fn bad_env_value_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["check-config", "serve"] {
        let out = run(
            &[sub, "--listen", "127.0.0.1:0"],
            &[("INFERGATE_SERVER__MAX_BODY_BYTES", "lots")],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("INFERGATE_SERVER__MAX_BODY_BYTES"),
            "{sub}: {stderr}"
        );
        assert!(
            !stderr.contains("listening"),
            "{sub} must not bind: {stderr}"
        );
    }
}

#[test]
fn bad_file_value_names_the_file_and_key_and_every_error_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "[server]\nio_threads = \"many\"\n[compute]\nqueue_capacity = -1\n",
    )
    .unwrap();
    let out = run(&["check-config"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("default.toml"), "{stderr}");
    assert!(stderr.contains("io_threads"), "{stderr}");
    assert!(stderr.contains("queue_capacity"), "{stderr}");
}

#[test]
fn check_config_accepts_the_shipped_files() {
    let repo = env!("CARGO_MANIFEST_DIR");
    for profile in [None, Some("compose")] {
        let mut cmd = Command::new(bin());
        cmd.current_dir(repo).arg("check-config");
        if let Some(p) = profile {
            cmd.args(["--profile", p]);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{profile:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_config_and_print_config_say_who_may_call_what() {
    let dir = tempfile::tempdir().unwrap();
    let access = |env: &[(&str, &str)]| {
        let check = run(&["check-config"], env, dir.path());
        assert_eq!(check.status.code(), Some(0), "{check:?}");
        let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
        let print = run(&["print-config"], env, dir.path());
        let stdout = String::from_utf8_lossy(&print.stdout).into_owned();
        let line = stderr.lines().find(|l| l.starts_with("access: ")).unwrap();
        // print-config says the same, as a comment its TOML keeps.
        assert!(stdout.contains(&format!("# {line}\n")), "{stdout}");
        line.to_owned()
    };
    let line = access(&[]);
    assert!(
        line.contains("no API key file at")
            && line.contains(
                "protected mode, the admin routes /stats /metrics /console/status \
                 /v2/repository answer only to loopback, the check socket; the rest to anyone"
            ),
        "{line}"
    );
    let line = access(&[(
        "INFERGATE_AUTH__LOCAL_NETWORKS",
        r#"["attached", "10.0.0.1/8"]"#,
    )]);
    assert!(
        line.contains("only to loopback, the check socket, attached, 10.0.0.0/8;"),
        "{line}"
    );
    let line = access(&[("INFERGATE_AUTH__PROTECTED_MODE", "false")]);
    assert!(
        line.contains("auth.protected_mode = false: every route"),
        "{line}"
    );
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/api_keys"), "").unwrap();
    let line = access(&[]);
    assert!(
        line.contains("API keys from") && line.contains("scopes decide"),
        "{line}"
    );
}

#[test]
fn print_config_redacts_secrets_and_shows_sources() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "SUPER-SECRET-KEY-MATERIAL\n").unwrap();
    let key_var = key.display().to_string();
    for args in [&["print-config"][..], &["print-config", "--sources"][..]] {
        let out = run(
            args,
            &[
                ("INFERGATE_TLS__KEY_FILE", key_var.as_str()),
                ("INFERGATE_TLS__CERT", "cert-pem-text"),
                ("INFERGATE_SERVER__BACKLOG", "77"),
            ],
            dir.path(),
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("SUPER-SECRET"), "{stdout}");
        assert!(stdout.contains("[redacted]"), "{stdout}");
        assert!(stdout.contains("77"), "{stdout}");
        toml::from_str::<toml::Table>(&stdout).expect("print-config output is TOML");
        if args.len() == 2 {
            assert!(stdout.contains("INFERGATE_SERVER__BACKLOG"), "{stdout}");
            assert!(stdout.contains(key_var.as_str()), "{stdout}");
        }
    }
}

#[test]
fn healthcheck_exit_codes() {
    let gw = Gateway::start(Options::default());
    let ok = Command::new(bin())
        .args(["healthcheck", "--url", &gw.url("/health")])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let not_found = Command::new(bin())
        .args(["healthcheck", "--url", &gw.url("/nope")])
        .output()
        .unwrap();
    assert_eq!(not_found.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&not_found.stderr);
    assert!(stderr.contains("404"), "the status is shown: {stderr}");
    assert!(stderr.contains("not_found"), "the body is shown: {stderr}");
    // A smoke prediction over TLS.
    let smoke = Command::new(bin())
        .args(["healthcheck", "--url", &gw.url("/predict"), "--data", SMOKE])
        .output()
        .unwrap();
    assert_eq!(
        smoke.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&smoke.stderr)
    );
    drop(gw);
    let refused = Command::new(bin())
        .args([
            "healthcheck",
            "--url",
            "https://127.0.0.1:1/health",
            "--timeout-ms",
            "500",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
}

#[test]
fn healthcheck_over_the_check_socket() {
    let gw = Gateway::start(Options::default().tabular_only().check_socket());
    let socket = gw.check_socket.clone().unwrap();
    let run = |args: &[&str]| {
        Command::new(bin())
            .arg("healthcheck")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["--url", "http://localhost/ready"][..],
        &["--url", "http://localhost/predict", "--data", SMOKE][..],
        // Only the path matters over a socket.
        &["--url", "/health"][..],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A smoke request the model refuses: exit 1, the status and the body on stderr.
    let refused = run(&[
        "--url",
        "http://localhost/predict",
        "--data",
        r#"{"features":[1.0]}"#,
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("422"), "{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    // A body that is not JSON, sent as text: refused for its content type.
    let wrong_type = run(&[
        "--url",
        "http://localhost/predict",
        "--data",
        "hello",
        "--content-type",
        "text/plain",
    ]);
    assert_eq!(wrong_type.status.code(), Some(1));
    drop(gw);
    // The instance is gone, and so is its socket.
    let gone = run(&["--url", "http://localhost/ready", "--timeout-ms", "500"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}
