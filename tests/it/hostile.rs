//! Clients that send what no real one does: a 70 kB header, 300 headers, two different
//! `Content-Length`s, `Content-Length` with `Transfer-Encoding`. Each is refused (431, or
//! 400 and the connection closed), over HTTP/1.1 and HTTP/2; and HTTPS answers carry HSTS.
// Tests: a failed unwrap is a failed test. Waiting on a real child process is wall-clock
// time, not the paused tokio clock.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::{Gateway, Options, h1_client, h2_client, raw, runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn oversized_and_overfull_heads_get_431_over_h1_and_h2() {
    let gw = Gateway::start(Options::default().tabular_only());
    runtime().block_on(async {
        let big = "x".repeat(70_000);
        for (proto, c) in [("h1", h1_client()), ("h2", h2_client())] {
            let r = c.get(gw.url("/health")).header("x-big", &big).send().await;
            assert_eq!(r.unwrap().status(), 431, "{proto}: 70 kB header");
            let mut req = c.get(gw.url("/health"));
            for i in 0..300 {
                req = req.header(format!("x-h{i}"), "v");
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 431, "{proto}: 300 headers");
            // And the gateway serves the next request.
            let r = c.get(gw.url("/health")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{proto}");
        }
        // On h2 the count is ours to enforce, so the answer is our JSON.
        let mut req = h2_client().get(gw.url("/health"));
        for i in 0..300 {
            req = req.header(format!("x-h{i}"), "v");
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        assert_eq!(v["error"]["code"], "too_many_headers");
    });
}

/// Sends `request` on a fresh connection and reads until the server closes it (or 10 s
/// pass): the statuses answered, and whether it closed.
async fn answers_then_close(gw: &Gateway, request: &[u8]) -> (Vec<u16>, bool) {
    let mut tls = raw::connect(gw.addr).await;
    tls.write_all(&raw::with_suite_key(request)).await.unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got))
        .await
        .is_ok();
    (raw::response_statuses(&got), closed)
}

/// Request smuggling: two different `Content-Length`s are hyper's own 400; a
/// `Content-Length` with `Transfer-Encoding` (either order, also after an honest request on
/// the same connection) gets our 400 `ambiguous_framing`. Either way the connection closes.
/// A body that merely looks like such a head is a body.
#[test]
fn smuggling_heads_are_refused_and_the_connection_closed() {
    let gw = Gateway::start(Options::default().tabular_only());
    runtime().block_on(async {
        let twice = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
            content-length: 3\r\ncontent-length: 30\r\n\r\n{}\n";
        let (statuses, closed) = answers_then_close(&gw, twice).await;
        assert_eq!(statuses, [400]);
        assert!(closed);
        let health = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n".as_slice();
        let cl_te = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
            content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
            .as_slice();
        let te_cl = b"POST /predict HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\
            Content-Length: 40\r\n\r\n0\r\n\r\n"
            .as_slice();
        for (what, request, want) in [
            ("CL then TE", cl_te.to_vec(), vec![400]),
            ("TE then CL", te_cl.to_vec(), vec![400]),
            (
                "after an honest request",
                [health, cl_te, health].concat(),
                vec![200, 400],
            ),
        ] {
            let mut tls = raw::connect(gw.addr).await;
            tls.write_all(&raw::with_suite_key(&request)).await.unwrap();
            let mut got = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got))
                .await
                .is_ok();
            assert_eq!(raw::response_statuses(&got), want, "{what}");
            assert!(closed, "{what}: closed after the refusal");
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains(r#""code":"ambiguous_framing""#),
                "{what}: {text}"
            );
        }
        // A length-framed body holding what looks like a smuggled head, then another
        // request: both served, the connection kept.
        let fake = cl_te;
        let honest = [
            format!(
                "POST /nothing HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                fake.len()
            )
            .as_bytes(),
            fake,
            health,
        ]
        .concat();
        let mut tls = raw::connect(gw.addr).await;
        tls.write_all(&raw::with_suite_key(&honest)).await.unwrap();
        let mut got = vec![0u8; 0];
        let mut buf = [0u8; 4096];
        while raw::response_statuses(&got).len() < 2 {
            let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(raw::response_statuses(&got), [404, 200]);
        // And the gateway serves the next connection.
        let r = h1_client().get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The GOAWAY error codes in a run of HTTP/2 frames from the server.
fn goaway_codes(mut bytes: &[u8]) -> Vec<u32> {
    let mut codes = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        if bytes.len() < 9 + len {
            break;
        }
        if bytes[3] == 0x7 && len >= 8 {
            codes.push(u32::from_be_bytes(bytes[13..17].try_into().unwrap()));
        }
        bytes = &bytes[9 + len..];
    }
    codes
}

/// HTTP/2 floods, each on a connection of its own while another client keeps asking: a
/// rapid reset (streams opened and cancelled at once, CVE-2023-44487), and a CONTINUATION
/// flood (a header block that never ends). The gateway cuts each flooding connection off
/// with GOAWAY; the other client is answered throughout.
#[test]
fn h2_rapid_reset_and_continuation_floods_are_cut_off() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // :method GET, :scheme https, :path /health (literal), :authority x (literal).
    const HEADERS: &[u8] = b"\x82\x87\x04\x07/health\x01\x01x";
    let gw = Gateway::start(Options::default().tabular_only());
    runtime().block_on(async {
        let normal = h2_client();
        for attack in ["rapid reset", "continuation"] {
            let tls = raw::connect_h2(gw.addr).await;
            let (mut rd, mut wr) = tokio::io::split(tls);
            let reader = tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = rd.read_to_end(&mut got).await;
                got
            });
            wr.write_all(&[PREFACE, &frame(0x4, 0, 0, &[])].concat())
                .await
                .unwrap();
            let mut sent = 0u32;
            if attack == "continuation" {
                let _ = wr.write_all(&frame(0x1, 0x1, 1, HEADERS)).await;
            }
            // A field of 255 junk bytes under a new name, 61 to a frame (under 16 KiB).
            let mut field = b"\x00\x05x-jnk\x7f\x80\x01".to_vec();
            field.extend_from_slice(&[b'v'; 255]);
            let junk = field.repeat(61);
            while !reader.is_finished() && sent < 50_000 {
                let mut batch = Vec::new();
                for _ in 0..100 {
                    if attack == "rapid reset" {
                        let stream = 2 * sent + 1;
                        batch.extend(frame(0x1, 0x5, stream, HEADERS));
                        batch.extend(frame(0x3, 0, stream, &8u32.to_be_bytes()));
                    } else {
                        batch.extend(frame(0x9, 0, 1, &junk));
                    }
                    sent += 1;
                }
                if wr.write_all(&batch).await.is_err() {
                    break;
                }
                if sent.is_multiple_of(1000) {
                    let r = normal.get(gw.url("/health")).send().await.unwrap();
                    assert_eq!(r.status(), 200, "{attack}: the other client is answered");
                }
            }
            let got = tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .expect("the flooding connection is closed")
                .unwrap();
            let codes = goaway_codes(&got);
            assert!(!codes.is_empty(), "{attack}: GOAWAY after {sent} frames");
            eprintln!("{attack}: cut off after {sent} streams/frames, GOAWAY {codes:x?}");
            let r = normal.get(gw.url("/health")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    });
}

#[test]
fn https_answers_carry_hsts_and_the_check_socket_does_not() {
    let gw = Gateway::start(Options::default().tabular_only().check_socket());
    runtime().block_on(async {
        for c in [h1_client(), h2_client()] {
            let r = c.get(gw.url("/health")).send().await.unwrap();
            assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
            let r = c.get(gw.url("/nothing")).send().await.unwrap();
            assert!(r.headers().contains_key("strict-transport-security"));
        }
        // The plaintext check socket is no HTTPS origin.
        let socket = gw.check_socket.clone().unwrap();
        let a = support::unix::request(&socket, "GET", "/health", None)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        assert!(!a.headers.contains_key("strict-transport-security"));
    });
    let off = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_TLS__HSTS_MAX_AGE_S", 0),
    );
    runtime().block_on(async {
        let r = h1_client().get(off.url("/health")).send().await.unwrap();
        assert!(!r.headers().contains_key("strict-transport-security"));
    });
}

/// With `http.max_connections_per_ip`, one address holding its connections open gets no
/// more (closed at accept, before any TLS), while another address is served as usual.
#[test]
fn an_address_past_its_connection_cap_is_refused_at_accept() {
    const CAP: usize = 10;
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_HTTP__MAX_CONNECTIONS_PER_IP", CAP),
    );
    runtime().block_on(async {
        // The rig's own readiness checks have closed; hold the address's whole share.
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(raw::connect(gw.addr).await);
        }
        let refused = raw::try_connect(gw.addr).await;
        assert!(
            refused.is_err(),
            "the cap's next connection gets no handshake"
        );
        // Another address (loopback answers on all of 127/8) is served meanwhile.
        let other = support::bare_builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .http2_prior_knowledge()
            .build()
            .unwrap();
        let r = other.get(gw.url("/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let metrics = other.get(gw.url("/metrics")).send().await.unwrap();
        let text = metrics.text().await.unwrap();
        let refused = support::metric_in(&text, "infergate_connections_rejected_per_ip_total ");
        assert!(refused >= Some(1.0), "{text}");
        // A place freed is a place again.
        held.pop();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while raw::try_connect(gw.addr).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "{}", gw.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// `http.max_requests_per_connection`: the cap's last answer on HTTP/1.1 says
/// `Connection: close` and the connection ends; HTTP/2 clients move to a new connection
/// (GOAWAY) without a failed request.
#[test]
fn a_connection_carries_at_most_its_request_cap() {
    const CAP: usize = 5;
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_HTTP__MAX_REQUESTS_PER_CONNECTION", CAP),
    );
    runtime().block_on(async {
        let mut tls = raw::connect(gw.addr).await;
        let mut answered = 0;
        let mut got = Vec::new();
        for _ in 0..CAP + 3 {
            let sent = tls
                .write_all(&raw::with_suite_key(
                    b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n",
                ))
                .await;
            if sent.is_err() {
                break;
            }
            let mut chunk = [0u8; 4096];
            let mut buf = Vec::new();
            while !raw::response_complete(&buf) {
                match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            if buf.is_empty() {
                break;
            }
            answered += 1;
            got = buf;
        }
        assert_eq!(answered, CAP, "answers on one connection");
        let last = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(last.contains("connection: close"), "{last}");

        let h2 = h2_client();
        for _ in 0..CAP * 3 {
            let r = h2.get(gw.url("/health")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    });
}

/// A body trickled below `http.min_body_bytes_per_s` gets 408 `body_too_slow` once the
/// grace has passed, long before `server.request_timeout_ms`; a body at a fair pace is read.
#[test]
fn a_trickled_body_gets_408_and_a_steady_one_is_read() {
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_HTTP__MIN_BODY_BYTES_PER_S", 100)
            .env("INFERGATE_HTTP__BODY_PACE_GRACE_MS", 1000)
            .env("INFERGATE_SERVER__REQUEST_TIMEOUT_MS", 60_000),
    );
    runtime().block_on(async {
        let body = br#"{"features":[5.1,3.5,1.4,0.2]}"#;
        let send = |pause: Duration| async move {
            let mut tls = raw::connect(gw.addr).await;
            let head = format!(
                "POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                body.len() + 1000
            );
            tls.write_all(&raw::with_suite_key(head.as_bytes()))
                .await
                .unwrap();
            let started = std::time::Instant::now();
            let padded: Vec<u8> = body
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b' ', 1000))
                .collect();
            let mut got = Vec::new();
            for chunk in padded.chunks(100) {
                if tls.write_all(chunk).await.is_err() {
                    break;
                }
                tokio::time::sleep(pause).await;
                let mut buf = [0u8; 4096];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(1), tls.read(&mut buf)).await
                {
                    got.extend_from_slice(&buf[..n]);
                    if n == 0 || raw::response_complete(&got) {
                        break;
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let mut buf = [0u8; 4096];
                while !raw::response_complete(&got) {
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
            })
            .await;
            (
                String::from_utf8_lossy(&got).into_owned(),
                started.elapsed(),
            )
        };
        // 100 bytes every 2 s: 50 bytes a second.
        let (slow, took) = send(Duration::from_secs(2)).await;
        assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
        assert!(slow.contains("body_too_slow"), "{slow}");
        assert!(took < Duration::from_secs(15), "{took:?}");
        // 100 bytes every 50 ms: 2,000 bytes a second.
        let (steady, _) = send(Duration::from_millis(50)).await;
        assert!(steady.starts_with("HTTP/1.1 200"), "{steady}");
    });
}
