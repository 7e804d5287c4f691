//! Micro-benchmarks of the public edge's checks, the part of every guarded request that
//! keys and rate limits add:
//! - `auth`: the presented key's SHA-256 and its constant-time compare with every entry
//!   (1 and 100 keys in the file);
//! - `rate_limit`: one token from a key's bucket (one bucket, as under a single client),
//!   and from an address's bucket among 100,000 tracked (the LRU's hash, lock and move).
//!
//!   cargo bench --bench edge
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use infergate::auth::{Auth, KeySet, Scope, Scopes, keys};
use infergate::config::RateLimitConfig;
use infergate::rate_limit::{Client, RateLimits};

const KEY: &str = "ig_bench0000000000000000000000000000000000000000000000000000000000";

fn auth_with(n: usize) -> Auth {
    let scopes = Scopes::of(&[Scope::Predict]);
    let mut lines: Vec<String> = (1..n)
        .map(|i| keys::line(&format!("k{i}"), scopes, &format!("ig_other_{i}")))
        .collect();
    lines.push(keys::line("bench", scopes, KEY));
    let auth = Auth::open();
    auth.replace(KeySet::parse(&lines.join("\n")).unwrap());
    auth
}

fn auth(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {KEY}")).unwrap(),
    );
    let mut group = c.benchmark_group("auth");
    for n in [1, 100] {
        let auth = auth_with(n);
        group.bench_function(format!("authorize_{n}_keys"), |b| {
            b.iter(|| auth.authorize(black_box(&headers), Some(Scope::Predict)))
        });
    }
    group.finish();
}

fn rate_limit(c: &mut Criterion) {
    let limits = RateLimits::new(&RateLimitConfig {
        per_key_rps: 1e6,
        per_key_burst: 1_000_000,
        per_ip_rps: 1e6,
        per_ip_burst: 1_000_000,
        ..RateLimitConfig::default()
    });
    let key = Client::Key(Arc::from("bench"));
    for i in 0..100_000u32 {
        limits.check(Client::Addr(IpAddr::from(i.to_be_bytes())));
    }
    let mut group = c.benchmark_group("rate_limit");
    group.bench_function("one_key", |b| {
        b.iter(|| limits.check(black_box(key.clone())))
    });
    let mut i = 0u32;
    group.bench_function("one_of_100k_addresses", |b| {
        b.iter(|| {
            i = (i + 7919) % 100_000;
            limits.check(Client::Addr(IpAddr::from(i.to_be_bytes())))
        })
    });
    group.finish();
}

criterion_group!(benches, auth, rate_limit);
criterion_main!(benches);
