//! The prediction log against a real PostgreSQL each test starts and stops itself: one row
//! per answer with the client's `prediction_id`, nothing lost while Postgres is down or the
//! gateway stops, torn spool files, concurrent migrations, retention.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use infergate::prediction_log::record::{LogRow, LoggedInput, ShadowDiff};
use infergate::prediction_log::schema::MIGRATIONS;
use reqwest::Client;
use serde_json::{Value, json};
use tokio::time::Instant;

use support::postgres_server::{PASSWORD, PostgresServer};
use support::{Gateway, Options, h1_client, h2_client, runtime};

fn with_db(pg: &PostgresServer, spool: &Path) -> Options {
    Options::default()
        // These tests count every answer: adaptive admission, which rightly sheds (503)
        // when a 2-core machine busy with the suite's background builds slows the model,
        // is not what they test (tests/it/overload.rs is).
        .env("INFERGATE_ADMISSION__ADAPTIVE", false)
        .logging_to(&pg.url(), spool)
        .env("INFERGATE_PREDICTION_LOG__RETRY_INITIAL_MS", 100)
        .env("INFERGATE_PREDICTION_LOG__RETRY_MAX_MS", 500)
        .env("INFERGATE_PREDICTION_LOG__STATS_CACHE_MS", 100)
}

/// Rows sit in the writer's memory (a batch is due only after a minute or 10 000 rows),
/// so a SIGTERM finds them queued.
fn rows_wait_in_memory(opts: Options) -> Options {
    opts.env("INFERGATE_PREDICTION_LOG__FLUSH_INTERVAL_MS", 60_000)
        .env("INFERGATE_PREDICTION_LOG__BATCH_ROWS", 10_000)
}

/// What the client saw of one answer.
#[derive(Debug, Clone)]
struct Answer {
    prediction_id: String,
    request_id: String,
    cache: String,
    prediction: String,
    features: [f64; 4],
    /// The trace id of the answer's `traceparent`.
    trace_id: String,
}

async fn predict(
    gw: &Gateway,
    client: &Client,
    features: [f64; 4],
    request_id: &str,
    no_cache: bool,
) -> Result<Answer, String> {
    let mut req = client
        .post(gw.url("/predict"))
        .header("x-request-id", request_id)
        .json(&json!({ "features": features }));
    if no_cache {
        req = req.header("cache-control", "no-cache");
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("status {}", r.status()));
    }
    let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let trace_id = r.headers()["traceparent"].to_str().unwrap()[3..35].to_owned();
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(Answer {
        prediction_id: v["prediction_id"].as_str().unwrap().to_owned(),
        request_id: echoed,
        cache,
        prediction: v["prediction"].as_str().unwrap().to_owned(),
        features,
        trace_id,
    })
}

fn features(i: usize) -> [f64; 4] {
    [
        4.5 + (i % 30) as f64 * 0.1,
        3.0,
        1.0 + (i / 30) as f64 * 0.5,
        0.2,
    ]
}

/// Waits (up to `secs`) until `check` holds.
fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every answered id appears exactly once in the table.
fn assert_exactly_once(pg: &PostgresServer, answers: &[Answer]) {
    let rows = pg.query("SELECT prediction_id::text AS id FROM predictions");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        *counts
            .entry(r["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(rows.len(), answers.len(), "one row per answer");
    for a in answers {
        assert_eq!(
            counts.get(&a.prediction_id),
            Some(&1),
            "{} stored exactly once",
            a.prediction_id
        );
    }
}

/// `infergate_schema_migrations` as it is once every shipped migration is applied.
fn every_migration() -> Vec<Value> {
    MIGRATIONS
        .iter()
        .map(|m| json!({"version": m.version, "name": m.name}))
        .collect()
}

/// Files in a spool directory, but its `.lock`.
fn spool_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != ".lock")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_answer_is_one_row_with_the_id_the_client_got() {
    let pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let secret = spool.path().join("db_password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    // The password comes from a secret file, not the URL; the client's address is kept.
    let gw = Gateway::start(
        with_db(&pg, &spool.path().join("spool"))
            .env("INFERGATE_DATABASE__URL", pg.url_without_password())
            .env("INFERGATE_DATABASE__PASSWORD_FILE", secret.display())
            .env("INFERGATE_PREDICTION_LOG__LOG_CLIENT_ADDR", true)
            .with_suite_key(),
    );
    let rt = runtime();
    let answers = rt.block_on(async {
        let (h1, h2) = (h1_client(), h2_client());
        let mut answers = Vec::new();
        // 20 inputs: first a miss, then a hit; 10 more bypassing the cache; over h1 and h2.
        for i in 0..20 {
            let client = if i % 2 == 0 { &h1 } else { &h2 };
            answers.push(
                predict(&gw, client, features(i), &format!("req-{i}-a"), false)
                    .await
                    .unwrap(),
            );
            answers.push(
                predict(&gw, client, features(i), &format!("req-{i}-b"), false)
                    .await
                    .unwrap(),
            );
        }
        for i in 0..10 {
            answers.push(
                predict(&gw, &h2, features(i), &format!("req-{i}-c"), true)
                    .await
                    .unwrap(),
            );
        }
        // Concurrent identical requests: coalesced or hits, each its own row.
        let burst = join_all((0..20).map(|k| {
            let h2 = h2.clone();
            let gw = &gw;
            async move {
                predict(gw, &h2, features(100), &format!("burst-{k}"), false)
                    .await
                    .unwrap()
            }
        }))
        .await;
        answers.extend(burst);
        answers
    });
    let statuses: Vec<&str> = answers.iter().map(|a| a.cache.as_str()).collect();
    assert!(
        statuses.contains(&"miss") && statuses.contains(&"hit-l1") && statuses.contains(&"bypass")
    );

    // Hostile or malformed inputs are refused with a 4xx before anything is logged.
    rt.block_on(async {
        let h1 = h1_client();
        let huge = format!(r#"{{"features":[{}]}}"#, vec!["1.5"; 200_000].join(","));
        let cases: Vec<(String, u16)> = vec![
            (huge, 422),
            (r#"{"features":["\u0000",1,2,3]}"#.into(), 422),
            (
                r#"{"features":[1,2,3,4],"model":"iris\u0000; DROP TABLE predictions;--"}"#.into(),
                404,
            ),
            (
                r#"{"features":[1,2,3,4],"model":"ιρις-модель-🌸"}"#.into(),
                404,
            ),
            (
                r#"{"features":[1,2,3,"4'); DROP TABLE predictions;--"]}"#.into(),
                422,
            ),
        ];
        for (body, status) in cases {
            let r = h1
                .post(gw.url("/predict"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status);
            let v: Value = r.json().await.unwrap();
            assert!(v["error"]["code"].is_string());
        }
    });

    let n = answers.len() as i64;
    eventually("every row written", 15, || pg.count("predictions") == n);
    assert_exactly_once(&pg, &answers);
    let rows = pg.query(
        "SELECT prediction_id::text AS id, request_id, cache_status, prediction, model_name, \
         model_version, input_features, confidence, top_class, all_predictions, latency_us, \
         host(client_addr) AS client_addr, length(input_hash) AS hash_len, api_key, trace_id \
         FROM predictions",
    );
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    for a in &answers {
        let row = by_id[a.prediction_id.as_str()];
        assert_eq!(row["request_id"], a.request_id.as_str());
        assert_eq!(row["cache_status"], a.cache.as_str(), "{}", a.request_id);
        assert_eq!(row["prediction"], a.prediction.as_str());
        assert_eq!(row["model_name"], "iris-mlp");
        assert_eq!(row["model_version"], "1.0.0");
        let stored: Vec<f64> = row["input_features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (s, f) in stored.iter().zip(a.features) {
            assert!((s - f).abs() < 1e-5, "{stored:?} vs {:?}", a.features);
        }
        assert!(row["confidence"].as_f64().unwrap() > 0.0);
        assert!(row["top_class"].as_i64().is_some());
        assert_eq!(row["all_predictions"].as_array().unwrap().len(), 3);
        assert!(row["latency_us"].as_i64().unwrap() > 0);
        assert_eq!(row["client_addr"], "127.0.0.1");
        assert_eq!(row["hash_len"], 32);
        // The key's name, never the key.
        assert_eq!(row["api_key"], "suite");
        // The trace the answer named, so a trace finds its row.
        assert_eq!(row["trace_id"], a.trace_id.as_str());
    }
    // The table is intact after the hostile inputs.
    assert_eq!(pg.count("predictions"), n);

    rt.block_on(async {
        let ready = gw.get_json("/ready").await;
        assert_eq!(ready["checks"]["database"], "ok");
        let stats = gw.get_json("/stats").await;
        assert_eq!(stats["predictions_source"], "database");
        assert_eq!(stats["total_predictions"], n);
        assert_eq!(stats["predictions_last_hour"], n);
        assert_eq!(stats["prediction_log"]["rows_written"], n);
        assert_eq!(stats["prediction_log"]["rows_dropped"], 0);
        assert_eq!(
            gw.metric("infergate_log_rows_total{outcome=\"written\"}")
                .await,
            n as f64
        );
        assert!(
            gw.metric("infergate_log_flush_duration_seconds_count")
                .await
                >= 1.0
        );
    });
    assert!(
        !gw.logs().contains(PASSWORD),
        "the password is never logged"
    );
    assert!(!gw.logs().contains(support::SUITE_KEY), "nor the key");
}

#[test]
fn postgres_down_for_twenty_seconds_under_load_loses_nothing() {
    let mut pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        with_db(&pg, spool.path())
            // A request that waited on the database would take seconds.
            .env("INFERGATE_DATABASE__CONNECT_TIMEOUT_MS", 3000),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let gw = Arc::new(gw);
    // Four clients, each a request every 10 ms, half of them cache hits.
    let load: Vec<_> = (0..4)
        .map(|c| {
            let (gw, stop, outage) = (Arc::clone(&gw), Arc::clone(&stop), Arc::clone(&outage));
            rt.spawn(async move {
                let client = h2_client();
                let mut answers = Vec::new();
                let mut failures = Vec::new();
                let mut slowest = [Duration::ZERO; 2];
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let during = outage.load(Ordering::SeqCst) as usize;
                    match predict(
                        &gw,
                        &client,
                        features(i % 40 + c * 40),
                        &format!("c{c}-{i}"),
                        i.is_multiple_of(2),
                    )
                    .await
                    {
                        Ok(a) => answers.push(a),
                        Err(e) => failures.push(e),
                    }
                    slowest[during] = slowest[during].max(started.elapsed());
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (answers, failures, slowest)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let written_before = pg.count("predictions");
    assert!(written_before > 0, "rows reach the table while it is up");

    outage.store(true, Ordering::SeqCst);
    pg.stop();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while gw.get_json("/ready").await["checks"]["database"] != "down" {
            assert!(
                Instant::now() < deadline,
                "/ready reports the database down"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ready = h1_client().get(gw.url("/ready")).send().await.unwrap();
        assert_eq!(
            ready.status(),
            200,
            "a database outage degrades, it does not unready"
        );
    });
    std::thread::sleep(Duration::from_secs(20));
    let spooled_bytes = rt.block_on(async {
        let stats = gw.get_json("/stats").await;
        assert!(stats["prediction_log"]["rows_spooled"].as_u64().unwrap() > 0);
        stats["prediction_log"]["spool_bytes"].as_u64().unwrap()
    });
    assert!(spooled_bytes > 0, "rows are spooled while Postgres is down");
    assert!(!spool_files(spool.path()).is_empty());

    pg.restart();
    outage.store(false, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    let mut slowest = [Duration::ZERO; 2];
    for handle in load {
        let (a, f, s) = rt.block_on(handle).unwrap();
        answers.extend(a);
        failures.extend(f);
        slowest = [slowest[0].max(s[0]), slowest[1].max(s[1])];
    }
    eprintln!(
        "{} answers; slowest before/after the outage {:?}, during it {:?}",
        answers.len(),
        slowest[0],
        slowest[1]
    );
    assert!(failures.is_empty(), "no client request fails: {failures:?}");
    assert!(answers.len() > 1000, "steady load: {}", answers.len());
    assert!(
        slowest[1] < Duration::from_millis(1500),
        "no request waited on the database (connect timeout 3 s): {:?}",
        slowest[1]
    );
    let n = answers.len() as i64;
    eventually("every row in the table after the restart", 30, || {
        pg.count("predictions") == n
    });
    assert_exactly_once(&pg, &answers);
    rt.block_on(async {
        let stats = gw.get_json("/stats").await;
        assert_eq!(stats["prediction_log"]["spool_bytes"], 0, "spool empty");
        assert_eq!(stats["prediction_log"]["rows_dropped"], 0);
        assert!(stats["prediction_log"]["rows_replayed"].as_u64().unwrap() > 0);
        assert_eq!(gw.get_json("/ready").await["checks"]["database"], "ok");
        assert_eq!(gw.metric("infergate_log_spool_bytes").await, 0.0);
    });
    assert!(
        spool_files(spool.path()).is_empty(),
        "replayed segments deleted"
    );
}

#[test]
fn sigterm_with_postgres_down_spools_and_the_next_start_replays() {
    let mut pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let opts = rows_wait_in_memory(with_db(&pg, spool.path()));
    let mut gw = Gateway::start(opts.clone());
    let rt = runtime();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while gw.get_json("/ready").await["checks"]["database"] != "ok" {
            assert!(Instant::now() < deadline, "database ok at start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    pg.stop();
    let answers = rt.block_on(async {
        let client = h2_client();
        let mut answers = Vec::new();
        for i in 0..50 {
            answers.push(
                predict(&gw, &client, features(i), &format!("t-{i}"), false)
                    .await
                    .unwrap(),
            );
        }
        answers
    });
    gw.signal("TERM");
    let status = gw
        .wait_exit(Duration::from_secs(40))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", gw.logs());
    assert!(
        !spool_files(spool.path()).is_empty(),
        "rows spooled at shutdown"
    );
    assert!(
        gw.wait_log("prediction log: drained", Duration::from_secs(10)),
        "{}",
        gw.logs()
    );

    pg.restart();
    assert_eq!(pg.count("predictions"), 0);
    let gw = Gateway::start(opts);
    eventually("the spool replayed by the next start", 15, || {
        pg.count("predictions") == 50
    });
    assert_exactly_once(&pg, &answers);
    eventually("spool empty", 5, || spool_files(spool.path()).is_empty());
    drop(gw);
}

#[test]
fn sigterm_writes_queued_rows_to_postgres() {
    let pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let mut gw = Gateway::start(rows_wait_in_memory(with_db(&pg, spool.path())));
    eventually("schema applied", 10, || {
        gw.logs().contains("postgres is up")
    });
    let answers = runtime().block_on(async {
        let client = h1_client();
        let mut answers = Vec::new();
        for i in 0..30 {
            answers.push(
                predict(&gw, &client, features(i), &format!("q-{i}"), true)
                    .await
                    .unwrap(),
            );
        }
        answers
    });
    assert_eq!(pg.count("predictions"), 0, "still queued");
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(30)).unwrap().success());
    assert_exactly_once(&pg, &answers);
    assert!(spool_files(spool.path()).is_empty());
}

#[test]
fn a_torn_spool_replays_its_intact_records_and_reports_the_tear() {
    use infergate::prediction_log::record::Record;
    use infergate::prediction_log::spool::Spool;

    let pg = PostgresServer::start();
    let spool_dir = tempfile::tempdir().unwrap();
    let record = |i: i64| Record {
        prediction_id: uuid::Uuid::now_v7(),
        created_at_us: 1_763_000_000_000_000 + i,
        request_id: format!("spooled-{i}"),
        model_name: "iris-mlp".into(),
        model_version: "1.0.0".into(),
        cache_status: "miss".into(),
        input_hash: format!("{i:032x}"),
        input_features: Some(vec![Some(5.0), Some(3.0), Some(1.5), Some(0.2)]),
        image_hash: None,
        image_bytes: None,
        prediction: "setosa".into(),
        top_class: Some(0),
        confidence: Some(0.9),
        all_predictions: json!([{"class_id": 0, "label": "setosa", "confidence": 0.9}]),
        latency_us: 100,
        client_addr: None,
        api_key: None,
        trace_id: None,
        shadow_version: None,
        shadow_top1_agree: None,
        shadow_max_delta: None,
        model_load_us: None,
    };
    // Two segments, as two crashed runs would leave them: the first cut off inside its
    // last record, the second with a corrupted byte in its last record.
    let mut written = Vec::new();
    for run in 0..2 {
        let mut spool = Spool::open(spool_dir.path(), 1 << 30).unwrap();
        let records: Vec<Record> = (0..4).map(|i| record(run * 10 + i)).collect();
        spool.append(&records).unwrap();
        drop(spool);
        // The segment this run wrote: the newest.
        let mut names = spool_files(spool_dir.path());
        names.sort();
        let path = spool_dir.path().join(names.last().unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 5;
        if run == 0 {
            bytes.truncate(at);
        } else {
            bytes[at] ^= 0x01;
        }
        std::fs::write(&path, bytes).unwrap();
        written.extend(records[..3].iter().map(|r| r.request_id.clone()));
    }
    // And a file that is not a spool segment at all is left alone.
    std::fs::write(spool_dir.path().join("notes.txt"), "operator notes").unwrap();

    let gw = Gateway::start(with_db(&pg, spool_dir.path()));
    eventually("schema applied", 10, || {
        gw.logs().contains("postgres is up")
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while pg.count("predictions") != 6 {
        assert!(
            Instant::now() < deadline,
            "intact spooled records not replayed: {} rows\n{}",
            pg.count("predictions"),
            gw.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stored: Vec<String> = pg
        .query("SELECT request_id FROM predictions")
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    written.sort();
    assert_eq!(stored, written);
    let logs = gw.logs();
    assert!(logs.contains("torn or corrupt record"), "{logs}");
    runtime().block_on(async {
        assert_eq!(gw.metric("infergate_log_spool_torn_total").await, 2.0);
        let stats = gw.get_json("/stats").await;
        assert_eq!(stats["prediction_log"]["spool_torn_segments"], 2);
        assert_eq!(gw.get_json("/ready").await["status"], "ready");
    });
    eventually("replayed segments deleted", 5, || {
        spool_files(spool_dir.path()) == vec!["notes.txt".to_owned()]
    });
}

#[test]
fn two_gateways_starting_together_migrate_once_and_both_log() {
    let pg = PostgresServer::start();
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (o1, o2) = (with_db(&pg, s1.path()), with_db(&pg, s2.path()));
    let t1 = std::thread::spawn(move || Gateway::start(o1));
    let t2 = std::thread::spawn(move || Gateway::start(o2));
    let (g1, g2) = (t1.join().unwrap(), t2.join().unwrap());
    eventually("both connected", 10, || {
        [&g1, &g2]
            .iter()
            .all(|g| g.logs().contains("postgres is up"))
    });
    let migrations = pg.query("SELECT version, name FROM infergate_schema_migrations");
    assert_eq!(migrations, every_migration());
    let applied = [&g1, &g2]
        .iter()
        .filter(|g| g.logs().contains("applied migration"))
        .count();
    eventually("both connected", 10, || {
        [&g1, &g2]
            .iter()
            .all(|g| g.logs().contains("postgres is up"))
    });
    assert_eq!(applied, 1, "exactly one gateway applied the migration");
    let answers = runtime().block_on(async {
        let c = h1_client();
        vec![
            predict(&g1, &c, features(1), "g1", false).await.unwrap(),
            predict(&g2, &c, features(2), "g2", false).await.unwrap(),
        ]
    });
    eventually("both gateways' rows", 10, || pg.count("predictions") == 2);
    assert_exactly_once(&pg, &answers);
}

#[test]
fn migrate_subcommand_applies_the_schema_and_keeps_a_legacy_table() {
    let pg = PostgresServer::start();
    // The table of the stack infergate replaces, with a row in it.
    pg.execute(
        "CREATE TABLE predictions (id SERIAL PRIMARY KEY, input_features TEXT NOT NULL, \
         prediction REAL NOT NULL, confidence REAL NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT NOW()); \
         INSERT INTO predictions (input_features, prediction, confidence) VALUES ('[1,2,3,4]', 0, 0.9);",
    );
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, String)]| {
        let mut cmd = std::process::Command::new(support::bin());
        cmd.arg("--config-dir")
            .arg(dir.path())
            .arg("migrate")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[("INFERGATE_DATABASE__URL", pg.url())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let n = MIGRATIONS.len();
    let last = MIGRATIONS.last().unwrap().version;
    assert!(
        stderr.contains(&format!("schema at version {last} ({n} applied now)")),
        "{stderr}"
    );
    assert_eq!(
        pg.count("predictions_legacy"),
        1,
        "the old table is kept, renamed"
    );
    assert_eq!(pg.count("predictions"), 0);
    let again = run(&[("INFERGATE_DATABASE__URL", pg.url())]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("(0 applied now)"));
    assert!(!String::from_utf8_lossy(&again.stderr).contains(PASSWORD));
    // No database configured: a configuration error, exit 2.
    assert_eq!(run(&[]).status.code(), Some(2));
    // Unreachable database: exit 1.
    let down = run(&[(
        "INFERGATE_DATABASE__URL",
        "postgres://x@127.0.0.1:1/db".to_owned(),
    )]);
    assert_eq!(down.status.code(), Some(1));
}

#[test]
fn retention_deletes_old_rows_and_keeps_new_ones() {
    let pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        with_db(&pg, spool.path())
            .env("INFERGATE_PREDICTION_LOG__RETENTION_DAYS", 1)
            .env("INFERGATE_PREDICTION_LOG__RETENTION_INTERVAL_S", 1)
            .env("INFERGATE_PREDICTION_LOG__RETENTION_BATCH_ROWS", 2),
    );
    eventually("schema applied", 10, || {
        gw.logs().contains("postgres is up")
    });
    pg.execute(
        "INSERT INTO predictions (prediction_id, created_at, request_id, model_name, model_version, \
         cache_status, input_hash, prediction, confidence, all_predictions, latency_us) \
         SELECT gen_random_uuid(), now() - interval '3 days', 'old', 'm', '1', 'miss', 'h', 'x', 0.5, '[]', 1 \
         FROM generate_series(1, 5)",
    );
    let answer = runtime().block_on(async {
        predict(&gw, &h1_client(), features(3), "fresh", false)
            .await
            .unwrap()
    });
    eventually("old rows deleted in batches", 15, || {
        pg.count("predictions WHERE request_id = 'old'") == 0
    });
    eventually("the fresh row stays", 10, || pg.count("predictions") == 1);
    assert_exactly_once(&pg, &[answer]);
}

#[test]
fn without_a_database_the_log_is_off_and_stats_come_from_memory() {
    let gw = Gateway::start(Options::default());
    runtime().block_on(async {
        predict(&gw, &h1_client(), features(1), "m", false)
            .await
            .unwrap();
        let ready = gw.get_json("/ready").await;
        assert_eq!(ready["checks"]["database"], "disabled");
        let stats = gw.get_json("/stats").await;
        assert_eq!(stats["predictions_source"], "memory");
        assert_eq!(stats["prediction_log"]["status"], "disabled");
        assert_eq!(stats["total_predictions"], 1);
    });
}

#[test]
fn tls_to_postgres_is_verified_against_the_configured_ca() {
    let pg = PostgresServer::start_tls();
    let spool = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        with_db(&pg, spool.path()).env("INFERGATE_DATABASE__TLS_CA_PATH", pg.ca_path().display()),
    );
    eventually("connected over TLS", 10, || {
        gw.logs().contains("postgres is up")
    });
    let answer = runtime().block_on(async {
        predict(&gw, &h1_client(), features(5), "tls", false)
            .await
            .unwrap()
    });
    eventually("row written", 10, || pg.count("predictions") == 1);
    assert_exactly_once(&pg, &[answer]);
    // Every connection the gateway holds is encrypted.
    let ssl = pg.query(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'infergate'",
    );
    assert!(!ssl.is_empty());
    assert!(ssl.iter().all(|r| r["ssl"] == true), "{ssl:?}");

    // A CA that did not sign the server's certificate: no connection, rows spooled, /ready
    // says down (and stays 200).
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let wrong_ca = spool.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, other.cert.pem()).unwrap();
    let spool2 = tempfile::tempdir().unwrap();
    let gw2 = Gateway::start(
        with_db(&pg, spool2.path()).env("INFERGATE_DATABASE__TLS_CA_PATH", wrong_ca.display()),
    );
    runtime().block_on(async {
        predict(&gw2, &h1_client(), features(6), "wrong-ca", false)
            .await
            .unwrap();
        let ready = h1_client().get(gw2.url("/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        let v: Value = ready.json().await.unwrap();
        assert_eq!(v["checks"]["database"], "down");
    });
    eventually("the row spooled", 10, || {
        !spool_files(spool2.path()).is_empty()
    });
    assert_eq!(pg.count("predictions"), 1);
}

#[test]
fn a_full_spool_drops_rows_loudly_and_counts_every_one() {
    let mut pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        with_db(&pg, spool.path()).env("INFERGATE_PREDICTION_LOG__SPOOL_MAX_BYTES", 1 << 20),
    );
    eventually("schema applied", 10, || {
        gw.logs().contains("postgres is up")
    });
    pg.stop();
    let rt = runtime();
    let answered = rt.block_on(async {
        let client = h2_client();
        let mut answered = 0u64;
        for round in 0..80 {
            let batch = join_all((0..50).map(|k| {
                let client = client.clone();
                let gw = &gw;
                async move {
                    predict(gw, &client, features(round * 50 + k), "full", true)
                        .await
                        .unwrap()
                }
            }))
            .await;
            answered += batch.len() as u64;
        }
        answered
    });
    eventually("rows dropped once the spool is full", 10, || {
        gw.logs().contains("ROWS LOST")
    });
    let (spooled, dropped) = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = gw.get_json("/stats").await;
            let log = &s["prediction_log"];
            let (sp, dr) = (
                log["rows_spooled"].as_u64().unwrap(),
                log["rows_dropped"].as_u64().unwrap(),
            );
            if sp + dr == answered {
                assert!(log["spool_bytes"].as_u64().unwrap() <= 1 << 20);
                assert_eq!(
                    gw.metric("infergate_log_rows_total{outcome=\"dropped\"}")
                        .await,
                    dr as f64
                );
                break (sp, dr);
            }
            assert!(Instant::now() < deadline, "every row accounted for: {log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(
        dropped > 0 && spooled > 0,
        "spooled {spooled}, dropped {dropped}"
    );
    pg.restart();
    eventually("what fitted in the spool reaches the table", 20, || {
        pg.count("predictions") == spooled as i64
    });
    rt.block_on(async {
        let r = h1_client().get(gw.url("/ready")).send().await.unwrap();
        assert_eq!(r.status(), 200, "ready again once the database is back");
    });
    assert_eq!(
        pg.count("(SELECT DISTINCT prediction_id FROM predictions) d"),
        spooled as i64
    );
}

/// Uploads `bytes` (multipart field `file`); the answer's id, `X-Cache` and `image_hash`.
async fn upload(
    gw: &Gateway,
    client: &Client,
    bytes: &[u8],
    no_cache: bool,
) -> (String, String, String) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.to_vec()).file_name("photo"),
    );
    let mut req = client.post(gw.url("/predict")).multipart(form);
    if no_cache {
        req = req.header("cache-control", "no-cache");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    (
        v["prediction_id"].as_str().unwrap().to_owned(),
        cache,
        v["image_hash"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn every_image_answer_is_one_row_with_its_image_hash_top5_and_size() {
    const CAT: &[u8] = include_bytes!("../fixtures/images/cat.png");
    const BIKE: &[u8] = include_bytes!("../fixtures/images/bike.jpg");
    let pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let gw = Gateway::start(with_db(&pg, &spool.path().join("spool")));
    let answers = runtime().block_on(async {
        let (h1, h2) = (h1_client(), h2_client());
        let mut answers = Vec::new();
        for (client, bytes) in [(&h1, CAT), (&h2, BIKE)] {
            answers.push((upload(&gw, client, bytes, false).await, bytes.len())); // miss
            answers.push((upload(&gw, client, bytes, false).await, bytes.len())); // hit-l1
            answers.push((upload(&gw, client, bytes, true).await, bytes.len())); // bypass
        }
        let burst = join_all((0..8).map(|_| upload(&gw, &h2, CAT, true))).await;
        answers.extend(burst.into_iter().map(|a| (a, CAT.len())));
        // A refused upload is not logged.
        let r = h1
            .post(gw.url("/predict"))
            .header("content-type", "image/png")
            .body("not an image")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        answers
    });
    let statuses: Vec<&str> = answers.iter().map(|((_, c, _), _)| c.as_str()).collect();
    assert!(
        statuses.contains(&"miss") && statuses.contains(&"hit-l1"),
        "{statuses:?}"
    );
    let n = answers.len() as i64;
    eventually("every image row written", 15, || {
        pg.count("predictions") == n
    });
    let rows = pg.query(
        "SELECT prediction_id::text AS id, cache_status, image_hash, image_bytes, \
         input_features IS NULL AS no_features, model_name, top_class, prediction, \
         all_predictions FROM predictions",
    );
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_id.len(), answers.len(), "one row per answer");
    for ((id, cache, hash), size) in &answers {
        let row = by_id[id.as_str()];
        assert_eq!(row["cache_status"], cache.as_str());
        assert_eq!(row["image_hash"], hash.as_str());
        assert_eq!(row["image_bytes"], *size as i64);
        assert_eq!(row["no_features"], true);
        assert_eq!(row["model_name"], "efficientnet-lite0");
        let top5 = row["all_predictions"].as_array().unwrap();
        assert_eq!(top5.len(), 5);
        assert_eq!(row["top_class"], top5[0]["class_id"]);
        assert_eq!(row["prediction"], top5[0]["label"]);
    }
}

/// A tabular row as the request path (or the shadow runner) hands it to the sink.
fn log_row(request_id: &str, shadow: Option<ShadowDiff>) -> LogRow {
    LogRow {
        prediction_id: uuid::Uuid::now_v7(),
        request_id: request_id.into(),
        created_at: std::time::SystemTime::now(),
        model_name: "iris-mlp".into(),
        model_version: "1.0.0".into(),
        cache_status: "miss",
        input_hash: 0x5eed,
        input: LoggedInput::Features(vec![5.1, 3.5, 1.4, 0.2]),
        answer: bytes::Bytes::from_static(
            br#""prediction":"setosa","class_id":0,"top_k":[{"class_id":0,"label":"setosa","confidence":0.9}]"#,
        ),
        confidence: Some(0.9),
        latency: Duration::from_micros(100),
        client_addr: None,
        api_key: None,
        trace_id: None,
        shadow,
        model_load: None,
    }
}

#[test]
fn shadow_comparisons_land_in_the_primary_rows_columns_after_migrating_from_version_4() {
    use infergate::prediction_log::db::DbSettings;
    use infergate::prediction_log::record::Record;
    use infergate::prediction_log::spool::Spool;
    use infergate::prediction_log::writer::WriterSettings;
    use infergate::prediction_log::{DbStatus, PredictionLog, PredictionLogSettings};

    let pg = PostgresServer::start();
    // A database a gateway from before shadow mirroring left: migrations 1-4 applied and
    // recorded, one row of its own.
    let (before, from_5): (Vec<_>, Vec<_>) = MIGRATIONS.iter().partition(|m| m.version <= 4);
    assert_eq!(before.len(), 4);
    assert_eq!(
        from_5.first().map(|m| (m.version, m.name)),
        Some((5, "shadow"))
    );
    pg.execute(
        "CREATE TABLE infergate_schema_migrations (version INTEGER PRIMARY KEY, \
         name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    );
    for m in &before {
        pg.execute(m.sql);
        pg.execute(&format!(
            "INSERT INTO infergate_schema_migrations (version, name) VALUES ({}, '{}')",
            m.version, m.name
        ));
    }
    pg.execute(
        "INSERT INTO predictions (prediction_id, request_id, model_name, model_version, \
         cache_status, input_hash, prediction, confidence, all_predictions, latency_us, trace_id) \
         VALUES (gen_random_uuid(), 'from-v4', 'iris-mlp', '1.0.0', 'miss', 'h', 'setosa', 0.9, \
         '[]', 1, '4bf92f3577b34da6a3ce929d0e0e4736')",
    );

    // A mirrored row spooled while Postgres was away, replayed by the writer.
    let spool_dir = tempfile::tempdir().unwrap();
    let spooled = Record::from_row(log_row(
        "spooled",
        Some(ShadowDiff {
            version: "2.0.0-rc1".into(),
            top1_agree: Some(true),
            // Not a short decimal: the spool's JSON and COPY's float4 must keep it exactly.
            max_delta: 0.1 + f32::EPSILON,
        }),
    ));
    let mut spool = Spool::open(spool_dir.path(), 1 << 30).unwrap();
    spool.append(std::slice::from_ref(&spooled)).unwrap();
    drop(spool);

    let log = PredictionLog::start(PredictionLogSettings {
        db: DbSettings {
            url: pg.url(),
            password: None,
            connect_timeout: Duration::from_secs(5),
            tls_ca: None,
        },
        writer: WriterSettings {
            batch_rows: 100,
            flush_interval: Duration::from_millis(20),
            write_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_millis(500),
            migrate: true,
        },
        queue_capacity: 64,
        spool_dir: spool_dir.path().to_owned(),
        spool_max_bytes: 1 << 30,
        stats_cache: Duration::from_millis(100),
        retention: None,
    })
    .unwrap();
    // Migrated and replayed before the new rows go in, so each takes the path it is here for.
    eventually("the spooled row replayed", 15, || {
        log.status() == DbStatus::Ok && pg.count("predictions") == 2
    });
    // Through the real writer: one row mirrored, one not.
    log.submit(log_row(
        "mirrored",
        Some(ShadowDiff {
            version: "2.0.0".into(),
            top1_agree: Some(false),
            max_delta: 0.375,
        }),
    ));
    log.submit(log_row("not-mirrored", None));
    eventually("every row written", 15, || pg.count("predictions") == 4);
    runtime().block_on(async {
        let counters = log.counters();
        assert_eq!((counters.written, counters.replayed), (2, 1));
        assert!(log.close(Instant::now() + Duration::from_secs(10)).await);
    });

    assert_eq!(
        pg.query("SELECT version, name FROM infergate_schema_migrations ORDER BY version"),
        every_migration(),
        "0005 and later applied on top of 0001-0004"
    );
    let types = pg.query(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'predictions' AND column_name LIKE 'shadow%' ORDER BY ordinal_position",
    );
    assert_eq!(
        types,
        [
            json!({"column_name": "shadow_version", "data_type": "text"}),
            json!({"column_name": "shadow_top1_agree", "data_type": "boolean"}),
            json!({"column_name": "shadow_max_delta", "data_type": "real"}),
        ]
    );
    // float4 read back as float8, so the stored value compares exactly as an f32.
    let rows = pg.query(
        "SELECT request_id, shadow_version, shadow_top1_agree, \
         shadow_max_delta::float8 AS shadow_max_delta FROM predictions",
    );
    let by_request: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["request_id"].as_str().unwrap(), r))
        .collect();
    let shadow = |request: &str| {
        let r = by_request[request];
        (
            r["shadow_version"].as_str().map(str::to_owned),
            r["shadow_top1_agree"].as_bool(),
            r["shadow_max_delta"].as_f64().map(|d| d as f32),
        )
    };
    assert_eq!(
        shadow("mirrored"),
        (Some("2.0.0".to_owned()), Some(false), Some(0.375))
    );
    assert_eq!(
        shadow("spooled"),
        (
            Some("2.0.0-rc1".to_owned()),
            Some(true),
            Some(0.1 + f32::EPSILON)
        )
    );
    for unmirrored in ["not-mirrored", "from-v4"] {
        let r = by_request[unmirrored];
        for column in ["shadow_version", "shadow_top1_agree", "shadow_max_delta"] {
            assert!(r[column].is_null(), "{unmirrored}: {column} is NULL");
        }
    }
    assert!(
        spool_files(spool_dir.path()).is_empty(),
        "replayed, deleted"
    );
}
