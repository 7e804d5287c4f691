//! Micro-benchmarks of the request path's remaining hot parts (the key, L1 and JSON decode
//! are in `benches/cache.rs` and `benches/predict_path.rs`):
//! - `encode`: a tabular answer's cacheable members from the model's probabilities (a miss),
//!   and the whole answer spliced from cached members (every hit);
//! - `id`: a request id — a fresh UUIDv7 (no `x-request-id`), or a client's checked and kept;
//! - `log_submit`: handing one prediction row to the log sink, the request path's whole cost
//!   of the prediction log. The sink runs (its writer on its own runtime, started once,
//!   outside the timed loop) against a database that is not there, so rows drain into the
//!   disk spool at the writer's pace; the queue fills and the rest are counted as dropped —
//!   the submit costs the same either way: one `try_send`.
//!
//!   cargo bench --bench request_parts
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use hyper::HeaderMap;
use infergate::encode;
use infergate::http::request_id;
use infergate::infer::demo;
use infergate::prediction_log::db::DbSettings;
use infergate::prediction_log::record::{LogRow, LoggedInput};
use infergate::prediction_log::writer::WriterSettings;
use infergate::prediction_log::{PredictionLog, PredictionLogSettings};
use uuid::Uuid;

fn encode_answers(c: &mut Criterion) {
    let model = demo::load().unwrap();
    let info = infergate::infer::model::Model::info(&model);
    let probs = [0.97f32, 0.02, 0.01];
    let members = encode::tabular(info, &probs);
    let id = Uuid::now_v7();
    let mut group = c.benchmark_group("encode");
    group.bench_function("tabular_members", |b| {
        b.iter(|| encode::tabular(info, black_box(&probs)))
    });
    group.bench_function("answer_from_cached_members", |b| {
        b.iter(|| encode::answer(black_box(id), black_box(&members.body), true))
    });
    group.finish();
}

fn ids(c: &mut Criterion) {
    let none = HeaderMap::new();
    let mut given = HeaderMap::new();
    given.insert(
        "x-request-id",
        "3f2c9a7e-client-supplied-id".parse().unwrap(),
    );
    let mut group = c.benchmark_group("id");
    group.bench_function("fresh_uuid_v7", |b| b.iter(|| request_id(black_box(&none))));
    group.bench_function("client_x_request_id", |b| {
        b.iter(|| request_id(black_box(&given)))
    });
    group.finish();
}

fn log_submit(c: &mut Criterion) {
    let spool = tempfile::tempdir().unwrap();
    let log = PredictionLog::start(PredictionLogSettings {
        db: DbSettings {
            // A closed port: the writer spools what it takes and retries in the background.
            url: "postgres://bench@127.0.0.1:1/none".into(),
            password: None,
            connect_timeout: Duration::from_millis(100),
            tls_ca: None,
        },
        writer: WriterSettings {
            batch_rows: 1000,
            flush_interval: Duration::from_millis(20),
            write_timeout: Duration::from_secs(5),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            migrate: false,
        },
        queue_capacity: 10_000,
        spool_dir: spool.path().to_path_buf(),
        spool_max_bytes: 64 << 20,
        stats_cache: Duration::from_secs(5),
        retention: None,
    })
    .unwrap();
    let answer = Bytes::from_static(
        br#""model":{"name":"iris-mlp","version":"1.0.0"},"prediction":"setosa","confidence":0.97,"class_id":0"#,
    );
    let mut group = c.benchmark_group("log_submit");
    group.bench_function("tabular_row", |b| {
        b.iter(|| {
            log.submit(LogRow {
                prediction_id: Uuid::now_v7(),
                request_id: "bench".into(),
                created_at: SystemTime::now(),
                model_name: "iris-mlp".into(),
                model_version: "1.0.0".into(),
                cache_status: "hit-l1",
                input_hash: 0x9e37_79b9_7f4a_7c15,
                input: LoggedInput::Features(vec![5.1, 3.5, 1.4, 0.2]),
                answer: answer.clone(),
                confidence: Some(0.97),
                latency: Duration::from_micros(80),
                client_addr: Some(IpAddr::from([10, 0, 0, 1])),
                api_key: None,
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
                shadow: None,
                model_load: None,
            })
        })
    });
    group.finish();
}

criterion_group!(benches, encode_answers, ids, log_submit);
criterion_main!(benches);
