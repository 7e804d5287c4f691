//! Open-loop load for `scripts/bench/overload.sh`: uncached predictions (distinct features,
//! `Cache-Control: no-cache`) sent at a fixed rate whatever the answers take, over HTTP/2
//! and TLS. Latency counts from each request's scheduled send, so a slow server cannot
//! hide its queue by slowing the sender (no coordinated omission). Prints one JSON line:
//! answers by status, how many 503s carried `Retry-After`, and the accepted (200)
//! answers' latency percentiles.
//!
//!   OVERLOAD_URL=https://127.0.0.1:8443/predict OVERLOAD_RATE=2000 OVERLOAD_SECONDS=10 \
//!       OVERLOAD_SKIP_SECONDS=3 cargo bench --bench overload
//!
//! Without `OVERLOAD_URL` (as under `cargo test --all-targets`) it does nothing.
// A bench: a failed unwrap is a failed run, and its report is its standard output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    accepted: Vec<Duration>,
    ok: u64,
    shed: u64,
    shed_with_retry_after: u64,
    retry_after_max: u64,
    deadline: u64,
    other: u64,
    errors: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let Ok(url) = std::env::var("OVERLOAD_URL") else {
        eprintln!("overload: OVERLOAD_URL unset; nothing to do (see scripts/bench/overload.sh)");
        return;
    };
    let rate: f64 = env("OVERLOAD_RATE", 1000.0);
    let seconds: f64 = env("OVERLOAD_SECONDS", 10.0);
    let skip: f64 = env("OVERLOAD_SKIP_SECONDS", 2.0);
    let conns: usize = env("OVERLOAD_CONNECTIONS", 4);
    let key = std::env::var("OVERLOAD_KEY").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let clients: Vec<reqwest::Client> = (0..conns)
            .map(|_| {
                let mut headers = reqwest::header::HeaderMap::new();
                if let Some(key) = &key {
                    headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
                }
                reqwest::Client::builder()
                    .danger_accept_invalid_certs(true)
                    .http2_prior_knowledge()
                    .default_headers(headers)
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap()
            })
            .collect();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let start = Instant::now();
        let total = (rate * seconds) as u64;
        let counted_from = start + Duration::from_secs_f64(skip);
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let at = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(at).await;
            let client = clients[i as usize % conns].clone();
            let (url, tally) = (url.clone(), Arc::clone(&tally));
            tasks.push(tokio::spawn(async move {
                let body = format!(
                    r#"{{"features":[{:.6},3.0,1.4,{:.6}]}}"#,
                    4.0 + (i % 4096) as f64 / 1024.0,
                    (i / 4096) as f64 / 1e4
                );
                let sent = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("cache-control", "no-cache")
                    .body(body)
                    .send()
                    .await;
                let answer = match sent {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let retry_after = r
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        let _ = r.bytes().await;
                        Some((status, retry_after))
                    }
                    Err(_) => None,
                };
                let took = at.elapsed();
                if at < counted_from {
                    return;
                }
                let mut t = tally.lock().unwrap();
                match answer {
                    Some((200, _)) => {
                        t.ok += 1;
                        t.accepted.push(took);
                    }
                    Some((503, retry_after)) => {
                        t.shed += 1;
                        if let Some(s) = retry_after {
                            t.shed_with_retry_after += 1;
                            t.retry_after_max = t.retry_after_max.max(s);
                        }
                    }
                    Some((504, _)) => t.deadline += 1,
                    Some(_) => t.other += 1,
                    None => t.errors += 1,
                }
            }));
        }
        let late = Instant::now() - (start + Duration::from_secs_f64(seconds));
        for t in tasks {
            let _ = t.await;
        }
        let mut t = tally.lock().unwrap();
        t.accepted.sort();
        let counted = t.ok + t.shed + t.deadline + t.other + t.errors;
        println!(
            "{}",
            serde_json::json!({
                "rate": rate,
                "seconds": seconds,
                "skipped_s": skip,
                "counted": counted,
                "ok": t.ok,
                "shed_503": t.shed,
                "shed_with_retry_after": t.shed_with_retry_after,
                "retry_after_max_s": t.retry_after_max,
                "deadline_504": t.deadline,
                "other_status": t.other,
                "errors": t.errors,
                "accepted_per_s": t.ok as f64 / (seconds - skip),
                "p50_ms": percentile(&t.accepted, 0.50),
                "p90_ms": percentile(&t.accepted, 0.90),
                "p99_ms": percentile(&t.accepted, 0.99),
                "max_ms": percentile(&t.accepted, 1.0),
                "sender_late_ms": late.as_secs_f64() * 1e3,
            })
        );
    });
}
