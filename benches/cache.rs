//! Micro-benchmarks of the cache path: key hashing, L1 hits, misses and inserts.
//!
//!   cargo bench --bench cache
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use infergate::cache::CachedAnswer;
use infergate::cache::key::{CacheKey, Input};
use infergate::cache::l1::{L1, L1Settings};

fn key(i: u32) -> CacheKey {
    CacheKey::new(
        "iris-mlp",
        "1.0.0",
        Input::Features(&[i as f32, 3.5, 1.4, 0.2]),
    )
}

fn l1_ops(c: &mut Criterion) {
    // Runtime context only for tokio's clock (entries carry a tokio Instant).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let answer = CachedAnswer {
        confidence: Some(0.99),
        // About the size of an Iris answer's cacheable members.
        body: Bytes::from(vec![b'x'; 280]),
        probs: std::sync::Arc::from([0.99, 0.007, 0.003]),
    };
    let l1 = L1::new(&L1Settings {
        max_entries: 100_000,
        max_bytes: 64 << 20,
        ttl: Duration::from_secs(3600),
        shards: 16,
    });
    let keys: Vec<CacheKey> = (0..10_000).map(key).collect();
    for k in &keys {
        l1.insert(k, answer.clone());
    }
    let mut group = c.benchmark_group("l1");
    group.throughput(Throughput::Elements(1));
    group.bench_function("key_hash", |b| {
        b.iter(|| {
            CacheKey::new(
                "iris-mlp",
                "1.0.0",
                Input::Features(black_box(&[5.1, 3.5, 1.4, 0.2])),
            )
        })
    });
    let mut i = 0usize;
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            l1.get(black_box(&keys[i])).unwrap()
        })
    });
    let absent = key(1_000_000);
    group.bench_function("get_miss", |b| b.iter(|| l1.get(black_box(&absent))));
    let mut j = 0u32;
    group.bench_function("insert", |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            l1.insert(&key(j % 200_000), answer.clone())
        })
    });
    group.finish();
}

criterion_group!(benches, l1_ops);
criterion_main!(benches);
