//! Every refusal reaches the client, whatever the client still sends, as Debian's `curl`
//! (the binary the seed's users run, not a library) sees it over HTTP/2 and HTTP/1.1; and
//! warnings a client triggers at will are summarised, not written per connection.
// Tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Gateway, Options};

const TRIES: usize = 50;
const MAX_BODY: usize = 1024;

/// One refusal: curl's arguments (after the URL's scheme and address are known), the body
/// fed on stdin when the arguments read it, and what must come back.
struct Refusal {
    name: &'static str,
    path: &'static str,
    args: &'static [&'static str],
    stdin: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn refusals() -> Vec<Refusal> {
    let big = vec![b'7'; 4 * MAX_BODY];
    vec![
        Refusal {
            name: "415 wrong content type (a small body, sent at once)",
            path: "/predict",
            args: &["-H", "content-type: text/plain", "--data-binary", "hello"],
            stdin: None,
            status: 415,
            code: "unsupported_media_type",
        },
        Refusal {
            name: "413 by Content-Length",
            path: "/predict",
            args: &[
                "-H",
                "content-type: application/json",
                "--data-binary",
                "@-",
            ],
            stdin: Some(big.clone()),
            status: 413,
            code: "payload_too_large",
        },
        Refusal {
            // No length: chunked over HTTP/1.1, DATA frames without content-length over h2.
            name: "413 while reading",
            path: "/predict",
            args: &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-T",
                "-",
            ],
            stdin: Some(big),
            status: 413,
            code: "payload_too_large",
        },
        Refusal {
            name: "422 empty features",
            path: "/predict",
            args: &[
                "-H",
                "content-type: application/json",
                "--data-binary",
                "{\"features\": []}",
            ],
            stdin: None,
            status: 422,
            code: "empty_features",
        },
        Refusal {
            name: "404 with a body",
            path: "/nowhere",
            args: &["--data-binary", "{\"features\": [1, 2, 3, 4]}"],
            stdin: None,
            status: 404,
            code: "not_found",
        },
        Refusal {
            name: "405 with a body",
            path: "/predict",
            args: &["-X", "PUT", "--data-binary", "{\"features\": [1, 2, 3, 4]}"],
            stdin: None,
            status: 405,
            code: "method_not_allowed",
        },
    ]
}

/// Runs curl once; its exit status, the HTTP status and the body.
fn curl(url: &str, http: &str, r: &Refusal) -> (Option<i32>, u16, Vec<u8>) {
    let mut child = Command::new("curl")
        .args([
            "-sk",
            http,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
        ])
        .args(r.args)
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl (apt install curl)");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(body) = &r.stdin {
        // The server may answer before reading it all: a refused write is not our concern.
        let _ = stdin.write_all(body);
    }
    drop(stdin);
    let out = child.wait_with_output().expect("curl output");
    let text = out.stdout;
    let split = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = std::str::from_utf8(&text[split..])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    (out.status.code(), status, text[..split].to_vec())
}

#[test]
fn curl_gets_every_refusal_over_h2_and_h1() {
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_SERVER__MAX_BODY_BYTES", MAX_BODY),
    );
    let mut failures = Vec::new();
    for r in refusals() {
        let url = gw.url(r.path);
        for http in ["--http2", "--http1.1"] {
            let mut bad = 0;
            let mut example = String::new();
            for _ in 0..TRIES {
                let (exit, status, body) = curl(&url, http, &r);
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
                if exit != Some(0) || status != r.status || code.as_deref() != Some(r.code) {
                    bad += 1;
                    example = format!(
                        "curl exit {exit:?}, status {status}, body {:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            if bad > 0 {
                failures.push(format!(
                    "{} {http}: {bad}/{TRIES} failed, e.g. {example}",
                    r.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "refusals that did not reach curl:\n{}\nlogs:\n{}",
        failures.join("\n"),
        gw.logs()
    );
}

/// A TLS 1.2-style ClientHello whose SNI extension carries `127.0.0.1`: rustls parses it,
/// warns ("Illegal SNI extension: ignoring IP address"), and refuses the handshake (no
/// cipher suite in common), which is all this test needs from it.
fn client_hello_with_ip_sni() -> Vec<u8> {
    let host = b"127.0.0.1";
    let be16 = |n: usize| u16::try_from(n).expect("fits").to_be_bytes();
    let mut names = vec![0u8]; // host_name
    names.extend(be16(host.len()));
    names.extend(host);
    let mut sni = be16(names.len()).to_vec();
    sni.extend(names);
    let mut extensions = vec![0, 0]; // server_name
    extensions.extend(be16(sni.len()));
    extensions.extend(sni);
    let mut hello = vec![3, 3];
    hello.extend([7u8; 32]); // random
    hello.push(0); // no session id
    hello.extend(be16(2));
    hello.extend([0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA: nothing rustls offers
    hello.extend([1, 0]); // null compression
    hello.extend(be16(extensions.len()));
    hello.extend(extensions);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&u32::try_from(hello.len()).expect("fits").to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 3, 1];
    record.extend(be16(handshake.len()));
    record.extend(handshake);
    record
}

#[test]
fn a_thousand_handshakes_with_an_ip_as_sni_write_at_most_one_line() {
    let gw = Gateway::start(Options::default().tabular_only());
    let hello = client_hello_with_ip_sni();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(gw.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(&hello).expect("hello");
        // The alert, then the close: the server has parsed the hello.
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    let counted = support::runtime().block_on(gw.metric("infergate_tls_client_warnings_total "));
    assert_eq!(counted, 1000.0, "every warning counted");
    // The summary comes with the next metrics upkeep (every 5 s).
    assert!(
        gw.wait_log("TLS handshake warning", Duration::from_secs(15)),
        "no summary line:\n{}",
        gw.logs()
    );
    let logs = gw.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("SNI") || l.contains("TLS handshake warning"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one summary line, not one per handshake:\n{lines:#?}"
    );
    // The count is what had arrived when the line was due (the rest wait a minute).
    assert!(
        lines[0].contains("count") && lines[0].contains("Illegal SNI"),
        "the line carries the count and what the warning was: {}",
        lines[0]
    );
}
