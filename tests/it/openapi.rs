//! The OpenAPI document against the real server: `GET /openapi.json` serves the committed
//! `openapi.json` to anyone, and schemathesis (PyPI, `scripts/requirements/schema.txt`) generates
//! requests for every operation in it, valid and invalid, and finds no server error and no
//! answer the document does not describe (status, content type, headers, body schema).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::path::PathBuf;
use std::process::Command;
// How long schemathesis took is wall-clock time of a child process, not the tokio clock;
// printed, never asserted.
#[allow(clippy::disallowed_types)]
use std::time::Instant;

use support::{Gateway, Options, bare_builder, keys_on, repo, runtime};

/// schemathesis, in its venv.
fn schemathesis() -> PathBuf {
    support::venv("schema").join("bin/schemathesis")
}

#[test]
fn the_committed_document_is_served_without_a_key() {
    let gw = Gateway::start(Options::default().tabular_only());
    // A client that presents no key, even in a run with keys on: the document is open.
    let client = bare_builder().build().unwrap();
    let (status, content_type, body) = runtime().block_on(async {
        let r = client.get(gw.url("/openapi.json")).send().await.unwrap();
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        (r.status(), content_type, r.bytes().await.unwrap())
    });
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    let committed = std::fs::read(repo().join("openapi.json")).unwrap();
    assert!(
        body == committed,
        "the served document is not openapi.json (UPDATE_OPENAPI=1 cargo test --lib openapi)"
    );
}

#[test]
#[allow(clippy::disallowed_types)] // Instant: see its import
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let program = schemathesis();
    let gw = Gateway::start(Options::default());
    // Its own working directory: schemathesis reads a schemathesis.toml from there, and
    // nothing of the repository's should steer it.
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd.path())
        .arg("run")
        .arg(gw.url("/openapi.json"))
        // The gateway's self-signed development certificate.
        .args(["--tls-verify", "false"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "50"])
        .args(["--seed", "20261101"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        // Hypothesis' example database would be a directory in the working directory; a
        // fixed seed makes it useless anyway.
        .args(["--generation-database", "none"])
        .args(["--no-color"])
        .env("NO_COLOR", "1");
    if keys_on() {
        // Every request presents the suite's admin key, so that it reaches the handlers;
        // without it every scoped operation would only ever see 401.
        cmd.args(["--generation-with-security-parameters", "false"])
            .args([
                "-H",
                &format!("Authorization: Bearer {}", support::SUITE_KEY),
            ]);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("schemathesis took {:.1} s", took.as_secs_f64());
    assert!(
        out.status.success(),
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}\ngateway log tail:\n{}",
        out.status.code(),
        tail(&gw.logs(), 40),
    );
    // A run that tested nothing would also exit 0.
    assert!(
        stdout.contains("passed") && !stdout.contains("No operations"),
        "schemathesis ran no test:\n{stdout}\n{stderr}"
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
