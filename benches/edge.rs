//! Micro-benchmarks of the public edge's checks, the part of every guarded request that
//! keys and rate limits add:
//! - `auth`: the presented key's SHA-256 and its constant-time compare with every entry
//!   (1 and 100 keys in the file);
//! - `rate_limit`: one token from a key's bucket (one bucket, as under a single client),
//!   and from an address's bucket among 100,000 tracked (the LRU's hash, lock and move);
//! - `request`: what every request pays since the deadline and trace work: the deadline
//!   from its headers, its `traceparent` read and answered, and (HTTP/1.1) the smuggling
//!   guard following the bytes of a cached `/predict`; and what each cache miss pays for
//!   adaptive admission (a permit taken and given back).
//!
//!   cargo bench --bench edge
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use infergate::admission::Admission;
use infergate::auth::{Auth, KeySet, ProtectedMode, Scope, Scopes, keys};
use infergate::config::{AdmissionSection, RateLimitSection};
use infergate::deadline::DeadlinePolicy;
use infergate::rate_limit::{Client, RateLimits};
use infergate::server::h1_framing::Framing;
use infergate::trace_context::TraceContext;

const KEY: &str = "ig_bench0000000000000000000000000000000000000000000000000000000000";

fn auth_with(n: usize) -> Auth {
    let scopes = Scopes::of(&[Scope::Predict]);
    let mut lines: Vec<String> = (1..n)
        .map(|i| keys::line(&format!("k{i}"), scopes, &format!("ig_other_{i}")))
        .collect();
    lines.push(keys::line("bench", scopes, KEY));
    let auth = Auth::open(ProtectedMode::off());
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
        let client = IpAddr::from([127, 0, 0, 1]);
        group.bench_function(format!("authorize_{n}_keys"), |b| {
            b.iter(|| auth.authorize(black_box(&headers), Some(Scope::Predict), client))
        });
    }
    group.finish();
}

fn rate_limit(c: &mut Criterion) {
    let limits = RateLimits::new(
        &RateLimitSection {
            per_key_rps: 1e6,
            per_key_burst: 1_000_000,
            per_ip_rps: 1e6,
            per_ip_burst: 1_000_000,
            ..RateLimitSection::default()
        }
        .settings(),
    );
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

fn request(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-timeout", HeaderValue::from_static("250ms"));
    headers.insert(
        "traceparent",
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    let policy = DeadlinePolicy {
        default: std::time::Duration::from_secs(30),
        max: std::time::Duration::from_secs(30),
    };
    let mut group = c.benchmark_group("request");
    group.bench_function("deadline_from_headers", |b| {
        b.iter(|| policy.for_request(black_box(&headers), tokio::time::Instant::now()))
    });
    group.bench_function("traceparent_read_and_answered", |b| {
        b.iter(|| TraceContext::from_headers(black_box(&headers)).header_value())
    });
    group.bench_function("traceparent_started_and_answered", |b| {
        let none = HeaderMap::new();
        b.iter(|| TraceContext::from_headers(black_box(&none)).header_value())
    });
    let body = r#"{"features":[5.1,3.5,1.4,0.2]}"#;
    let request = format!(
        "POST /predict HTTP/1.1\r\nhost: localhost:8443\r\nuser-agent: h2load\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut framing = Framing::new(65536);
    group.bench_function("h1_framing_one_cached_predict", |b| {
        b.iter(|| framing.feed(black_box(request.as_bytes())))
    });
    let admission = Admission::new(AdmissionSection::default().limit_settings(1), ["iris-mlp"]);
    let deadline = policy.default_for(tokio::time::Instant::now());
    group.bench_function("admission_permit", |b| {
        b.iter(|| admission.admit("iris-mlp", &deadline).map(|p| p.finished()))
    });
    group.finish();
}

criterion_group!(benches, auth, rate_limit, request);
criterion_main!(benches);
