//! Rate limits end to end: a burst beyond a key's bucket gets 429 with a `Retry-After`
//! that is right (waiting it is enough), other keys are unaffected, anonymous clients are
//! limited by address (behind a trusted proxy, the address it names), and a flood of
//! distinct addresses keeps the buckets, and the process, bounded.
// Tests: a failed unwrap is a failed test. Waiting on a real child process is wall-clock
// time, not the paused tokio clock.
#![allow(clippy::unwrap_used, clippy::disallowed_types)]

use crate::support;

use std::time::Duration;

use futures_util::StreamExt as _;
use infergate::auth::keys;
use infergate::auth::{Scope, Scopes};
use reqwest::Client;
use serde_json::{Value, json};
use support::{Gateway, Options, SETOSA, bare_builder, runtime};

const A: &str = "ig_rate_a_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "ig_rate_b_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn clients() -> [(&'static str, Client); 2] {
    [
        ("h1", bare_builder().http1_only().build().unwrap()),
        (
            "h2",
            bare_builder().http2_prior_knowledge().build().unwrap(),
        ),
    ]
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[test]
fn a_burst_beyond_a_keys_bucket_gets_429_with_a_retry_after_that_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api_keys");
    let predict = Scopes::of(&[Scope::Predict]);
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n{}\n",
            keys::line("a", predict, A),
            keys::line("b", predict, B),
            // The suite's own key reads /metrics.
            keys::line("suite", Scopes::of(&[Scope::Admin]), support::SUITE_KEY),
        ),
    )
    .unwrap();
    // One request every 2 s on average, 3 at once.
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_AUTH__KEYS_PATH", file.display())
            .env("INFERGATE_RATE_LIMIT__PER_KEY_RPS", 0.5)
            .env("INFERGATE_RATE_LIMIT__PER_KEY_BURST", 3),
    );
    runtime().block_on(async {
        for (proto, c) in clients() {
            let send = |key: &'static str| {
                c.post(gw.url("/predict"))
                    .bearer_auth(key)
                    .json(&json!({ "features": SETOSA }))
                    .send()
            };
            let mut remaining = Vec::new();
            for _ in 0..3 {
                let r = send(A).await.unwrap();
                assert_eq!(r.status(), 200, "{proto}");
                assert_eq!(header(&r, "ratelimit-policy"), r#""key";q=3;w=6"#);
                remaining.push(header(&r, "ratelimit"));
            }
            assert!(remaining[0].starts_with(r#""key";r=2;"#), "{remaining:?}");
            assert!(remaining[2].starts_with(r#""key";r=0;"#), "{remaining:?}");
            let r = send(A).await.unwrap();
            assert_eq!(r.status(), 429, "{proto}");
            let retry: u64 = header(&r, "retry-after").parse().unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
            assert!(header(&r, "ratelimit").starts_with(r#""key";r=0;t="#));
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "rate_limited");
            // Another key has its own bucket.
            assert_eq!(send(B).await.unwrap().status(), 200, "{proto}");
            // Waiting what Retry-After said is enough.
            tokio::time::sleep(Duration::from_secs(retry)).await;
            assert_eq!(send(A).await.unwrap().status(), 200, "{proto}");
            // Open routes are not limited.
            for _ in 0..10 {
                let r = c.get(gw.url("/health")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                assert!(r.headers().get("ratelimit").is_none());
            }
            // Both buckets empty again before the next protocol's round.
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        assert!(
            gw.metric("infergate_rate_limited_total{policy=\"key\"}")
                .await
                >= 2.0
        );
    });
}

#[test]
fn anonymous_clients_are_limited_by_the_address_a_trusted_proxy_names() {
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_RATE_LIMIT__PER_IP_RPS", 0.1)
            .env("INFERGATE_RATE_LIMIT__PER_IP_BURST", 2)
            .env("INFERGATE_RATE_LIMIT__TRUSTED_PROXIES", "[\"127.0.0.0/8\"]"),
    );
    runtime().block_on(async {
        let [(_, c), _] = clients();
        let from = |addr: &str| {
            c.post(gw.url("/predict"))
                .header("x-forwarded-for", format!("203.0.113.250, {addr}"))
                .json(&json!({ "features": SETOSA }))
                .send()
        };
        assert_eq!(from("198.51.100.1").await.unwrap().status(), 200);
        assert_eq!(from("198.51.100.1").await.unwrap().status(), 200);
        let r = from("198.51.100.1").await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(header(&r, "ratelimit-policy"), r#""ip";q=2;w=20"#);
        assert_eq!(from("198.51.100.2").await.unwrap().status(), 200);
        assert!(
            gw.metric("infergate_rate_limited_total{policy=\"ip\"}")
                .await
                >= 1.0
        );
    });
}

/// 100,000 distinct client addresses, named by a trusted proxy: the buckets kept stay at
/// `max_tracked_clients`, and the process grows by no more than a fixed allowance (the
/// first 100k requests also warm allocator arenas and connection buffers).
#[test]
fn a_hundred_thousand_distinct_addresses_keep_memory_bounded() {
    const CAP: usize = 5_000;
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_RATE_LIMIT__PER_IP_RPS", 1)
            .env("INFERGATE_RATE_LIMIT__PER_IP_BURST", 5)
            .env("INFERGATE_RATE_LIMIT__MAX_TRACKED_CLIENTS", CAP)
            .env("INFERGATE_RATE_LIMIT__TRUSTED_PROXIES", "[\"127.0.0.1\"]")
            // The flood asks /stats (an admin route) as clients off this machine: protected
            // mode would refuse them all before any bucket is taken.
            .env("INFERGATE_AUTH__PROTECTED_MODE", false),
    );
    let rt = runtime();
    let c = bare_builder().http2_prior_knowledge().build().unwrap();
    let flood = |range: std::ops::Range<u32>| {
        let c = c.clone();
        let url = gw.url("/stats");
        async move {
            futures_util::stream::iter(range)
                .map(|i| {
                    let addr = std::net::Ipv4Addr::from(0x0a00_0000 + i);
                    c.get(&url)
                        .header("x-forwarded-for", addr.to_string())
                        .send()
                })
                .buffer_unordered(64)
                .for_each(|r| async move {
                    let r = r.unwrap();
                    assert_eq!(r.status(), 200);
                    // Read to the end: h2's client counts an answer dropped unread as a
                    // reset of its own, and gives up the connection after 1,024.
                    r.bytes().await.unwrap();
                })
                .await;
        }
    };
    rt.block_on(flood(0..20_000));
    let after_warm_up = gw.rss_kib();
    rt.block_on(flood(20_000..100_000));
    let after = gw.rss_kib();
    let stats = rt.block_on(gw.get_json("/stats"));
    let tracked = stats["rate_limit"]["tracked_clients"].as_u64().unwrap();
    assert!(tracked as usize <= CAP, "{stats}");
    assert!(tracked as usize >= CAP * 9 / 10, "{stats}");
    // 80,000 more addresses than the cap: unbounded buckets would be megabytes more.
    assert!(
        after < after_warm_up + 8 * 1024,
        "RSS grew from {after_warm_up} to {after} KiB"
    );
}
