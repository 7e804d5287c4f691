//! The model repository, through the real binary over HTTPS: versions loaded from a
//! directory, hot reload under load (no failed request, answers switch, no stale cache
//! entry served after the switch), a broken model reported while every other serves, the
//! repository API (index, load, unload), SIGHUP, the canary split and shadow mirroring
//! (metrics, and the log rows in a real PostgreSQL).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::disallowed_types)] // wall-clock time against a real process

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::postgres_server::PostgresServer;
use support::{Gateway, Options, h1_client, h2_client, runtime};

/// Iris rows, one per class.
const INPUTS: [[f64; 4]; 3] = [
    [5.1, 3.5, 1.4, 0.2],
    [6.1, 2.8, 4.7, 1.2],
    [6.9, 3.1, 5.4, 2.1],
];

/// Writes `<root>/<name>/<version>/` with the bundled Iris weights and its manifest, the
/// first feature's normalisation mean moved by `shift` (another shift, other outputs).
pub(crate) fn write_version(root: &Path, name: &str, version: u32, shift: f64) -> PathBuf {
    let dir = root.join(name).join(version.to_string());
    // A new version is made beside and renamed in, as docs/models.md says: a look never
    // sees it half written. An existing one has its files replaced one by one, each
    // renamed in (never half a file).
    let fresh = !dir.exists();
    let target = if fresh {
        root.join(name).join(format!(".{version}.new"))
    } else {
        dir.clone()
    };
    std::fs::create_dir_all(&target).unwrap();
    let mut manifest: Value = serde_json::from_str(infergate::infer::demo::MANIFEST).unwrap();
    let mean = manifest["normalization"]["mean"][0].as_f64().unwrap();
    manifest["normalization"]["mean"][0] = json!(mean + shift);
    for (file, bytes) in [
        (
            "model.safetensors",
            infergate::infer::demo::WEIGHTS.to_vec(),
        ),
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ] {
        let tmp = target.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, target.join(file)).unwrap();
    }
    if fresh {
        std::fs::rename(&target, &dir).unwrap();
    }
    dir
}

pub(crate) fn with_repository(root: &Path, poll_ms: u64) -> Options {
    Options::default()
        .tabular_only()
        .env("INFERGATE_REPOSITORY__PATH", root.display())
        .env("INFERGATE_REPOSITORY__POLL_INTERVAL_MS", poll_ms)
}

/// One `/predict` answer: status, version and confidence.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    version: String,
    confidence: f64,
    body: Value,
}

async fn predict(
    gw: &Gateway,
    c: &reqwest::Client,
    query: &str,
    input: &[f64; 4],
    no_cache: bool,
) -> Answer {
    let mut req = c
        .post(gw.url(&format!("/predict{query}")))
        .json(&json!({ "features": input }));
    if no_cache {
        req = req.header("cache-control", "no-cache");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    Answer {
        status,
        version: body["model"]["version"].as_str().unwrap_or("").to_owned(),
        confidence: body["confidence"].as_f64().unwrap_or(-1.0),
        body,
    }
}

/// POSTs to `path` (with `body` as JSON): the status and the JSON answer.
pub(crate) async fn post(gw: &Gateway, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = h1_client().post(gw.url(path));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn versions(gw: &Gateway, model: &str) -> Vec<String> {
    let meta = gw.get_json(&format!("/v2/models/{model}")).await;
    meta["versions"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits up to 30 s for `done`.
async fn wait_for(what: &str, done: impl AsyncFnMut() -> bool) {
    support::wait_for(what, Duration::from_secs(30), done).await;
}

#[test]
fn a_broken_model_is_reported_unavailable_and_every_other_model_serves() {
    let root = tempfile::tempdir().unwrap();
    write_version(root.path(), "good", 1, 0.0);
    let broken = write_version(root.path(), "broken", 1, 0.0);
    std::fs::write(
        broken.join("model.safetensors"),
        &infergate::infer::demo::WEIGHTS[..64],
    )
    .unwrap();
    let gw = Gateway::start(with_repository(root.path(), 200));
    runtime().block_on(async {
        let c = h2_client();
        let ready = gw.get_json("/ready").await;
        assert_eq!(ready["status"], "ready", "{ready}");
        assert_eq!(ready["checks"]["models"]["good"], "ok");
        assert_eq!(ready["checks"]["models"]["broken"], "unavailable");
        assert_eq!(ready["checks"]["models"]["iris-mlp"], "ok");

        let meta = gw.get_json("/v2/models/broken").await;
        assert_eq!(meta["state"], "UNAVAILABLE", "{meta}");
        assert!(
            meta["reason"].as_str().unwrap().contains("model.safetensors"),
            "{meta}"
        );
        let r = c.get(gw.url("/v2/models/broken/ready")).send().await.unwrap();
        assert_eq!(r.status(), 503);
        let r = c.get(gw.url("/v2/models/good/ready")).send().await.unwrap();
        assert_eq!(r.status(), 200);

        let a = predict(&gw, &c, "?model=broken", &INPUTS[0], false).await;
        assert_eq!(a.status, 503, "{:?}", a.body);
        assert_eq!(a.body["error"]["code"], "model_unavailable");
        let a = predict(&gw, &c, "?model=good", &INPUTS[0], false).await;
        assert_eq!((a.status, a.version.as_str()), (200, "1"), "{:?}", a.body);
        assert_eq!(a.body["model"]["name"], "good");
        let a = predict(&gw, &c, "", &INPUTS[0], false).await;
        assert_eq!(a.body["model"]["name"], "iris-mlp");
        let r = c
            .post(gw.url("/v2/models/broken/infer"))
            .json(&json!({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": INPUTS[0]}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());

        let (status, index) = post(&gw, "/v2/repository/index", None).await;
        assert_eq!(status, 200);
        let states: HashMap<String, String> = index
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    format!("{}:{}", e["name"].as_str().unwrap(), e["version"].as_str().unwrap()),
                    e["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(states["broken:1"], "UNAVAILABLE", "{index}");
        assert_eq!(states["good:1"], "READY");
        assert_eq!(states["iris-mlp:1.0.0"], "READY");
        let (_, ready_only) = post(&gw, "/v2/repository/index", Some(json!({"ready": true}))).await;
        assert!(ready_only.as_array().unwrap().iter().all(|e| e["state"] == "READY"));
        assert!(
            gw.metric("infergate_model_load_failures_total{model=\"broken\"}")
                .await
                >= 1.0
        );
        assert_eq!(
            gw.metric("infergate_model_ready{model=\"good\",version=\"1\"}").await,
            1.0
        );
        assert!(gw.logs().contains("model failed to load"));

        // Fixed on disk: the next look serves it.
        write_version(root.path(), "broken", 1, 0.0);
        wait_for("the fixed model", async || {
            predict(&gw, &c, "?model=broken", &INPUTS[0], false).await.status == 200
        })
        .await;
    });
}

/// Requests from 8 clients (h1 and h2) run while a new version replaces the served one,
/// then while that version's files are replaced in place: every request succeeds, answers
/// switch, and none sent after a switch gets what the old files computed, from any cache.
#[test]
fn hot_reload_under_load_switches_with_no_failed_request_and_no_stale_answer() {
    let root = tempfile::tempdir().unwrap();
    write_version(root.path(), "flower", 1, 0.0);
    let gw = Arc::new(Gateway::start(with_repository(root.path(), 100)));
    runtime().block_on(async {
        let c = h2_client();
        // Each version's answers, computed with the cache bypassed.
        let truth = async |query: &str| {
            let mut out = Vec::new();
            for input in &INPUTS {
                out.push(predict(&gw, &c, query, input, true).await);
            }
            out
        };
        let v1 = truth("?model=flower").await;
        assert!(v1.iter().all(|a| a.status == 200 && a.version == "1"));

        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Vec::new();
        for i in 0..8 {
            let (gw, stop) = (Arc::clone(&gw), Arc::clone(&stop));
            load.push(tokio::spawn(async move {
                let c = if i % 2 == 0 { h1_client() } else { h2_client() };
                let mut seen = Vec::new();
                let started = Instant::now();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                    let input = INPUTS[n % INPUTS.len()];
                    let sent = Instant::now();
                    let a = predict(&gw, &c, "?model=flower", &input, false).await;
                    seen.push((sent, n % INPUTS.len(), a));
                    n += 1;
                }
                seen
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;

        // A new version: the default policy serves only the newest.
        write_version(root.path(), "flower", 2, 1.5);
        wait_for("version 2", async || versions(&gw, "flower").await == ["2"]).await;
        let switched = Instant::now();
        let v2 = truth("?model=flower").await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        // The same version's files replaced in place: same label, other numbers.
        write_version(root.path(), "flower", 2, -1.5);
        wait_for("the replaced files", async || {
            let a = predict(&gw, &c, "?model=flower", &INPUTS[1], true).await;
            (a.confidence - v2[1].confidence).abs() > 1e-6
        })
        .await;
        let replaced = Instant::now();
        let v2b = truth("?model=flower").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);

        for i in 0..INPUTS.len() {
            assert!(
                (v1[i].confidence - v2[i].confidence).abs() > 1e-6
                    && (v2[i].confidence - v2b[i].confidence).abs() > 1e-6,
                "the versions' outputs must differ for input {i}"
            );
        }
        let mut total = 0;
        let mut after_switch = 0;
        let mut hits_after = 0;
        for task in load {
            for (sent, i, a) in task.await.unwrap() {
                total += 1;
                assert_eq!(
                    a.status, 200,
                    "a request failed during the reload: {:?}",
                    a.body
                );
                let close = |b: &Answer| (a.confidence - b.confidence).abs() < 1e-6;
                if sent > replaced {
                    assert!(
                        close(&v2b[i]) && a.version == "2",
                        "stale answer: {:?}",
                        a.body
                    );
                } else if sent > switched {
                    after_switch += 1;
                    hits_after += usize::from(a.body["cached"] == true);
                    assert_eq!(
                        a.version, "2",
                        "version 1 answered after the switch: {:?}",
                        a.body
                    );
                    assert!(
                        close(&v2[i]) || close(&v2b[i]),
                        "stale answer: {:?}",
                        a.body
                    );
                } else {
                    assert!(a.version == "1" || a.version == "2");
                }
            }
        }
        assert!(total > 100, "only {total} requests ran");
        assert!(
            after_switch > 10 && hits_after > 0,
            "{after_switch} after, {hits_after} hits"
        );
        assert!(
            gw.metric("infergate_repository_reloads_total{trigger=\"poll\"}")
                .await
                >= 2.0
        );
    });
}

/// A request that chose version 1 before version 2 was swapped in is answered by version 1
/// after the swap, while requests after it get version 2. One compute thread and a slow
/// model (`model.forward_delay_ms`) put the order beyond doubt: version 2's warm-up holds
/// the thread, the request queues behind it on version 1, the swap comes when the warm-up
/// ends, and the request is computed after that.
#[test]
fn a_request_in_flight_across_a_swap_finishes_on_the_version_it_chose() {
    let root = tempfile::tempdir().unwrap();
    write_version(root.path(), "slow", 1, 0.0);
    let gw = Arc::new(Gateway::start(
        with_repository(root.path(), 100)
            .env("INFERGATE_MODEL__FORWARD_DELAY_MS", 1500)
            .env("INFERGATE_COMPUTE__THREADS", 1)
            .env("INFERGATE_SERVER__REQUEST_TIMEOUT_MS", 20_000),
    ));
    runtime().block_on(async {
        write_version(root.path(), "slow", 2, 1.0);
        // The look (100 ms) finds it and its warm-up takes the thread for 1.5 s.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            versions(&gw, "slow").await,
            ["1"],
            "swapped before the warm-up ended"
        );
        let in_flight = {
            let gw = Arc::clone(&gw);
            tokio::spawn(async move {
                predict(&gw, &h2_client(), "?model=slow", &INPUTS[0], true).await
            })
        };
        wait_for("version 2", async || versions(&gw, "slow").await == ["2"]).await;
        assert!(
            !in_flight.is_finished(),
            "the request ended before the swap"
        );
        let a = in_flight.await.unwrap();
        assert_eq!((a.status, a.version.as_str()), (200, "1"), "{:?}", a.body);
        let after = predict(&gw, &h1_client(), "?model=slow", &INPUTS[0], true).await;
        assert_eq!((after.status, after.version.as_str()), (200, "2"));
    });
}

#[test]
fn the_repository_api_loads_unloads_and_sighup_looks() {
    let root = tempfile::tempdir().unwrap();
    write_version(root.path(), "m", 1, 0.0);
    // No polling: only SIGHUP and the API change what is served.
    let gw = Gateway::start(with_repository(root.path(), 0));
    runtime().block_on(async {
        let c = h1_client();
        assert_eq!(versions(&gw, "m").await, ["1"]);
        write_version(root.path(), "m", 2, 1.0);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(versions(&gw, "m").await, ["1"], "nothing polls");
        gw.signal("HUP");
        wait_for("SIGHUP's look", async || versions(&gw, "m").await == ["2"]).await;

        let (status, body) = post(&gw, "/v2/repository/models/m/unload", None).await;
        assert_eq!((status, &body), (200, &json!({})));
        let a = predict(&gw, &c, "?model=m", &INPUTS[0], false).await;
        assert_eq!(a.status, 503);
        let (_, index) = post(&gw, "/v2/repository/index", None).await;
        assert!(
            index
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "m" && e["state"] == "UNLOADED"),
            "{index}"
        );
        assert_eq!(
            gw.get_json("/ready").await["checks"]["models"]["m"],
            "unloaded"
        );

        // A new model directory, loaded by name.
        write_version(root.path(), "n", 3, 0.0);
        let (status, _) = post(&gw, "/v2/repository/models/n/load", Some(json!({}))).await;
        assert_eq!(status, 200);
        assert_eq!(
            predict(&gw, &c, "?model=n", &INPUTS[0], false)
                .await
                .version,
            "3"
        );
        let (status, _) = post(&gw, "/v2/repository/models/m/load", None).await;
        assert_eq!(status, 200);
        let a = predict(&gw, &c, "?model=m&version=2", &INPUTS[0], false).await;
        assert_eq!((a.status, a.version.as_str()), (200, "2"));
        let a = predict(&gw, &c, "?model=m&version=1", &INPUTS[0], false).await;
        assert_eq!(a.status, 404);
        assert_eq!(a.body["error"]["code"], "version_not_found");
        // The protocol's paths name versions too.
        let infer = json!({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "data": INPUTS[0]}]});
        let (status, body) = post(&gw, "/v2/models/m/versions/2/infer", Some(infer.clone())).await;
        assert_eq!((status, &body["model_version"]), (200, &json!("2")), "{body}");
        let (status, body) = post(&gw, "/v2/models/m/versions/1/infer", Some(infer)).await;
        assert_eq!(status, 404, "{body}");
        assert!(body["error"].is_string());

        // Refusals, in the protocol's error shape.
        let (status, body) = post(&gw, "/v2/repository/models/nope/load", None).await;
        assert_eq!(status, 404);
        assert!(body["error"].is_string(), "{body}");
        let (status, body) = post(&gw, "/v2/repository/models/iris-mlp/unload", None).await;
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().contains("configuration"),
            "{body}"
        );
        let broken = write_version(root.path(), "b", 1, 0.0);
        std::fs::write(broken.join("manifest.json"), "{").unwrap();
        let (status, body) = post(&gw, "/v2/repository/models/b/load", None).await;
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().contains("manifest.json"),
            "{body}"
        );
        let r = c.get(gw.url("/v2/repository/index")).send().await.unwrap();
        assert_eq!(r.status(), 405);
    });
}

#[test]
fn a_canary_split_holds_its_weight_over_2000_requests() {
    let root = tempfile::tempdir().unwrap();
    write_version(root.path(), "c", 1, 0.0);
    write_version(root.path(), "c", 2, 1.0);
    std::fs::write(
        root.path().join("c/model.toml"),
        "[version_policy]\nall = true\n[traffic]\n\"1\" = 80\n\"2\" = 20\n",
    )
    .unwrap();
    let gw = Arc::new(Gateway::start(with_repository(root.path(), 0)));
    let counts = runtime().block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let gw = Arc::clone(&gw);
            tasks.push(tokio::spawn(async move {
                let c = h2_client();
                let mut counts = HashMap::<String, usize>::new();
                for n in 0..250 {
                    let a = predict(&gw, &c, "?model=c", &INPUTS[(t + n) % 3], false).await;
                    assert_eq!(a.status, 200);
                    *counts.entry(a.version).or_default() += 1;
                }
                counts
            }));
        }
        let mut counts = HashMap::<String, usize>::new();
        for task in tasks {
            for (v, n) in task.await.unwrap() {
                *counts.entry(v).or_default() += n;
            }
        }
        // A request that names its version is never split.
        let a = predict(&gw, &h1_client(), "?model=c&version=2", &INPUTS[0], false).await;
        assert_eq!(a.version, "2");
        counts
    });
    let canary = counts.get("2").copied().unwrap_or(0) as f64 / 2000.0;
    assert!(
        (canary - 0.20).abs() <= 0.05,
        "canary share {canary}: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), 2000);
}

#[test]
fn shadow_diffs_reach_the_metrics_and_the_log_rows() {
    let pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    write_version(root.path(), "s", 1, 0.0);
    write_version(root.path(), "s", 2, 2.0);
    std::fs::write(
        root.path().join("s/model.toml"),
        "[version_policy]\nall = true\n[traffic]\n\"1\" = 1\n[shadow]\nversion = \"2\"\nshare = 0.5\n",
    )
    .unwrap();
    let gw = Gateway::start(with_repository(root.path(), 0).logging_to(&pg.url(), spool.path()));
    runtime().block_on(async {
        let c = h2_client();
        for n in 0..40 {
            let a = predict(&gw, &c, "?model=s", &INPUTS[n % 3], false).await;
            assert_eq!((a.status, a.version.as_str()), (200, "1"), "{:?}", a.body);
        }
        wait_for("20 comparisons", async || {
            gw.metric(
                "infergate_shadow_requests_total{model=\"s\",candidate=\"2\",outcome=\"compared\"}",
            )
            .await
                >= 20.0
        })
        .await;
        let agree = gw
            .metric("infergate_shadow_comparisons_total{model=\"s\",primary=\"1\",candidate=\"2\",top1=\"agree\"}")
            .await;
        let disagree = gw
            .metric("infergate_shadow_comparisons_total{model=\"s\",primary=\"1\",candidate=\"2\",top1=\"disagree\"}")
            .await;
        assert_eq!(agree + disagree, 20.0);
        let deltas = gw
            .metric("infergate_shadow_max_prob_delta_count{model=\"s\",primary=\"1\",candidate=\"2\"}")
            .await;
        assert_eq!(deltas, 20.0);
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    // The table exists once the log has migrated (its thread, in its own time).
    while !pg.has_table("predictions") || pg.count("predictions WHERE model_name = 's'") < 40 {
        assert!(Instant::now() < deadline, "rows did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pg.count("predictions WHERE model_name = 's' AND shadow_version = '2'"),
        20
    );
    assert_eq!(
        pg.count("predictions WHERE shadow_version IS NOT NULL AND (shadow_max_delta <= 0 OR shadow_top1_agree IS NULL)"),
        0,
        "the versions differ, so every comparison has a positive delta"
    );
    assert_eq!(
        pg.count("predictions WHERE model_name = 's' AND shadow_version IS NULL"),
        20
    );
}
