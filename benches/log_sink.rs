//! Prediction log throughput against a real PostgreSQL: per-row INSERT (what the replaced
//! stack did), `db::write_batch` (COPY BINARY into staging + insert-select, the writer's
//! path) at several batch sizes, and the whole sink (submit → batch → COPY) end to end.
//!
//! Needs a database: `scripts/bench/log.sh` starts one and sets
//! `INFERGATE_BENCH_DATABASE_URL`. Without it, this bench only says so and exits (so
//! `cargo test --all-targets`, which builds and runs benches once, needs no database).
// A benchmark: wall-clock time, printed.
#![allow(clippy::disallowed_types, clippy::print_stdout)]

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use infergate::prediction_log::db::{self, Connector, DbSettings};
use infergate::prediction_log::record::{LogRow, LoggedInput, Record};
use infergate::prediction_log::writer::WriterSettings;
use infergate::prediction_log::{PredictionLog, PredictionLogSettings, schema};
use uuid::Uuid;

const ANSWER: &str = r#""model":{"name":"iris-mlp","version":"1.0.0"},"prediction":"setosa","confidence":0.97,"class_id":0,"top_k":[{"class_id":0,"label":"setosa","confidence":0.97},{"class_id":1,"label":"versicolor","confidence":0.02},{"class_id":2,"label":"virginica","confidence":0.01}]"#;

fn row(i: u64) -> LogRow {
    LogRow {
        prediction_id: Uuid::now_v7(),
        request_id: format!("bench-{i}").into(),
        created_at: SystemTime::now(),
        model_name: "iris-mlp".into(),
        model_version: "1.0.0".into(),
        cache_status: "miss",
        input_hash: u128::from(i) * 0x9e37_79b9_7f4a_7c15,
        input: LoggedInput::Features(vec![5.1, 3.5, 1.4, i as f32 / 1000.0]),
        answer: Bytes::from_static(ANSWER.as_bytes()),
        confidence: Some(0.97),
        latency: Duration::from_micros(350),
        client_addr: Some(IpAddr::from([10, 0, 0, 1])),
        api_key: Some("mobile-app".into()),
        trace_id: Some(format!("{:032x}", u128::from(i) + 1)),
        shadow: None,
        model_load: None,
    }
}

fn main() {
    let Ok(url) = std::env::var("INFERGATE_BENCH_DATABASE_URL") else {
        eprintln!("log_sink: INFERGATE_BENCH_DATABASE_URL not set; run scripts/bench/log.sh");
        return;
    };
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cfg = DbSettings {
        url,
        password: None,
        connect_timeout: Duration::from_secs(5),
        tls_ca: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let connector = Connector::new(&cfg).expect("database url");
    rt.block_on(async {
        let mut client = connector.connect().await.expect("connect");
        schema::migrate(&mut client).await.expect("migrate");
        db::prepare_staging(&client).await.expect("staging");
        client
            .batch_execute("TRUNCATE predictions")
            .await
            .expect("truncate");

        // Per-row INSERT, autocommit: the replaced stack's way (fewer rows: it is slow).
        let n = (rows / 20).max(1000);
        let records: Vec<Record> = (0..n).map(|i| Record::from_row(row(i))).collect();
        // One placeholder per written column, counted so a new column cannot leave it behind.
        let placeholders: Vec<String> = (1..=db::COLUMNS.split(',').count())
            .map(|i| format!("${i}"))
            .collect();
        let insert = client
            .prepare(&format!(
                "INSERT INTO predictions ({}) VALUES ({})",
                db::COLUMNS,
                placeholders.join(",")
            ))
            .await
            .expect("prepare");
        let t = Instant::now();
        for r in &records {
            let created_at = r.created_at();
            client
                .execute(&insert, &db::params(r, &created_at))
                .await
                .expect("insert");
        }
        report("per-row INSERT (autocommit)", n, t.elapsed());

        for batch in [100usize, 1000, 5000] {
            let records: Vec<Record> = (0..rows).map(|i| Record::from_row(row(i))).collect();
            let t = Instant::now();
            for chunk in records.chunks(batch) {
                db::write_batch(&mut client, chunk).await.expect("write");
            }
            report(
                &format!("write_batch (COPY BINARY + insert-select), {batch} rows/batch"),
                rows,
                t.elapsed(),
            );
        }
    });

    // The whole sink: submit from this thread, writer thread batches and COPYs; timed to
    // the last row committed (close waits for it). The producer keeps the queue at most
    // half full, as a gateway's steady request rate would: a burst faster than the writer
    // would measure the queue, not the sink.
    let spool = tempfile::tempdir().expect("temp dir");
    let log = PredictionLog::start(PredictionLogSettings {
        db: cfg,
        writer: WriterSettings {
            batch_rows: 1000,
            flush_interval: Duration::from_millis(200),
            write_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            migrate: true,
        },
        queue_capacity: 65_536,
        spool_dir: spool.path().to_owned(),
        spool_max_bytes: 1 << 30,
        stats_cache: Duration::from_secs(1),
        retention: None,
    })
    .expect("sink");
    rt.block_on(async {
        // Connected first, so the figure is the steady state.
        while log.status() != infergate::prediction_log::DbStatus::Ok {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = Instant::now();
        let mut submit_time = Duration::ZERO;
        for i in 0..rows {
            let s = Instant::now();
            log.submit(row(i));
            submit_time += s.elapsed();
            while log.counters().queued > 32_768 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        log.close(tokio::time::Instant::now() + Duration::from_secs(120))
            .await;
        let c = log.counters();
        report(
            &format!(
                "whole sink (submit → queue → COPY), written {} spooled {} replayed {} dropped {}",
                c.written, c.spooled, c.replayed, c.dropped
            ),
            rows,
            t.elapsed(),
        );
        println!(
            "  submit() alone: {:.0} ns/row",
            submit_time.as_nanos() as f64 / rows as f64
        );
    });
}

fn report(what: &str, rows: u64, took: Duration) {
    println!(
        "{what}: {rows} rows in {:.3} s = {:.0} rows/s",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64()
    );
}
