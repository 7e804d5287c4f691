//! Models loaded on demand, through the real binary over HTTPS: a version listed but not in
//! memory until a request needs it, one load for many concurrent first requests, a memory
//! budget kept by evicting what is least worth keeping (never what is pinned, eager, in
//! use or too young), idle unloads that give the memory back, a failed load refused at once
//! until its backoff passes, cached answers that never load a model (L1, and L2 after a
//! restart, against a real Redis), the repository API's pin, shadows, ONNX files, and the
//! cold request's log row in a real PostgreSQL.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
#![allow(clippy::disallowed_types)] // wall-clock time against a real process

use crate::repository::{post, with_repository};
use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::postgres_server::PostgresServer;
use support::redis_server::RedisServer;
use support::{Gateway, Options, h1_client, h2_client, runtime, wait_for};

/// A photo for the image models.
const CAT: &[u8] = include_bytes!("../fixtures/images/cat.png");
/// An Iris row.
const ROW: [f64; 4] = [5.1, 3.5, 1.4, 0.2];

/// A gateway over `root` whose repository loads every model on demand; nothing is
/// evicted for age (tests that need the minimum age set it), polling off.
fn on_demand(root: &Path) -> Options {
    with_repository(root, 0)
        .env("INFERGATE_REPOSITORY__LOAD", "on_demand")
        .env("INFERGATE_REPOSITORY__MIN_RESIDENT_MS", 0)
        // Every request is answered here: adaptive shedding is tested elsewhere.
        .env("INFERGATE_ADMISSION__ADAPTIVE", false)
}

/// Writes `<root>/<name>/1/`: a tabular MLP of 4 features, hidden layers of `width`, 3
/// classes, with weights drawn from `seed` (each model its own numbers). A width of 256
/// makes about 270 KB of weights.
fn write_mlp(root: &Path, name: &str, seed: u64, width: usize) -> PathBuf {
    let dir = root.join(name).join("1");
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut draw = |n: usize, scale: f32| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                // xorshift64: any spread of weights will do, as long as it is the seed's.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 11) as f32 / (1u64 << 53) as f32;
                ((unit * 2.0 - 1.0) * scale).to_le_bytes()
            })
            .collect()
    };
    let shapes = [("fc1", width, 4), ("fc2", width, width), ("fc3", 3, width)];
    let mut tensors = Vec::new();
    for (layer, out, inp) in shapes {
        let scale = 2.0 / (inp as f32).sqrt();
        tensors.push((
            format!("{layer}.weight"),
            vec![out, inp],
            draw(out * inp, scale),
        ));
        tensors.push((format!("{layer}.bias"), vec![out], draw(out, 0.1)));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (n.clone(), view)
        })
        .collect();
    let weights = safetensors::serialize(views, None).unwrap();
    let mut manifest: Value = serde_json::from_str(infergate::infer::demo::MANIFEST).unwrap();
    manifest["name"] = json!(name);
    manifest["architecture"]["hidden"] = json!([width, width]);
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    dir
}

/// Writes `<root>/<name>/1/` with the bundled EfficientNet-Lite0.
fn write_lite0(root: &Path, name: &str) {
    use infergate::infer::demo::efficientnet_lite0 as lite0;
    let dir = root.join(name).join("1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), lite0::WEIGHTS).unwrap();
    std::fs::write(dir.join("manifest.json"), lite0::MANIFEST).unwrap();
    std::fs::write(dir.join("labels.txt"), lite0::LABELS).unwrap();
}

fn write_toml(root: &Path, name: &str, text: &str) {
    std::fs::write(root.join(name).join("model.toml"), text).unwrap();
}

/// One answer: status, the headers that matter here, the body.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    cache: String,
    cold: bool,
    timing: String,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    /// The answer's numbers: a tabular model's confidence, an image model's top label.
    fn value(&self) -> String {
        match self.body["predictions"][0]["label"].as_str() {
            Some(label) => label.to_owned(),
            None => format!("{:.6}", self.body["confidence"].as_f64().unwrap_or(-1.0)),
        }
    }

    /// The gateway's own time for it (`Server-Timing`'s `total`), ms.
    fn total_ms(&self) -> f64 {
        self.timing
            .split(", ")
            .find_map(|phase| phase.strip_prefix("total;dur="))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// Whether it answers `value` (a confidence within 1e-5: a row computed in a batch
    /// may differ from the same row alone in its last float digits).
    fn answers(&self, value: &str) -> bool {
        let mine = self.value();
        match (mine.parse::<f64>(), value.parse::<f64>()) {
            (Ok(a), Ok(b)) => (a - b).abs() < 1e-5,
            _ => mine == value,
        }
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (cache, cold, timing, retry_after) = (
        header("x-cache").unwrap_or_default(),
        header("x-model-load").as_deref() == Some("cold"),
        header("server-timing").unwrap_or_default(),
        header("retry-after").and_then(|v| v.parse().ok()),
    );
    let status = r.status().as_u16();
    Answer {
        status,
        cache,
        cold,
        timing,
        retry_after,
        body: r.json().await.unwrap(),
    }
}

/// `/predict?model=<model>` with `row`; `no_cache` bypasses the cache.
async fn ask(
    gw: &Gateway,
    c: &reqwest::Client,
    model: &str,
    row: [f64; 4],
    no_cache: bool,
) -> Answer {
    let mut req = c
        .post(gw.url(&format!("/predict?model={model}")))
        .json(&json!({ "features": row }));
    if no_cache {
        req = req.header("cache-control", "no-cache");
    }
    answer(req.send().await.unwrap()).await
}

/// An upload of `CAT` to image model `model`, the cache bypassed.
async fn ask_image(gw: &Gateway, c: &reqwest::Client, model: &str) -> Answer {
    let r = c
        .post(gw.url(&format!("/predict?model={model}")))
        .header("content-type", "image/png")
        .header("cache-control", "no-cache")
        .body(CAT)
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// The repository index by `model:version`.
async fn index(gw: &Gateway) -> HashMap<String, Value> {
    let (_, entries) = post(gw, "/v2/repository/index", None).await;
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = format!(
                "{}:{}",
                e["name"].as_str().unwrap(),
                e["version"].as_str().unwrap()
            );
            (key, e.clone())
        })
        .collect()
}

async fn state(gw: &Gateway, model: &str) -> String {
    index(gw).await[&format!("{model}:1")]["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn loads(gw: &Gateway, model: &str, outcome: &str) -> f64 {
    gw.metric(&format!(
        "infergate_model_loads_total{{model=\"{model}\",outcome=\"{outcome}\"}}"
    ))
    .await
}

/// 100 distinct first requests at once, half over h1 and half over h2, for a model whose
/// load takes a while (its warm-up pass sleeps): one load, 100 answers, each the model's
/// own, and the answers that waited say so.
#[test]
fn a_hundred_concurrent_first_requests_cost_one_load() {
    let root = tempfile::tempdir().unwrap();
    write_mlp(root.path(), "m", 7, 64);
    let gw = Arc::new(Gateway::start(
        on_demand(root.path()).env("INFERGATE_MODEL__FORWARD_DELAY_MS", 300),
    ));
    runtime().block_on(async {
        let listed = index(&gw).await;
        assert_eq!(listed["m:1"]["state"], "UNLOADED", "{listed:?}");
        let meta = gw.get_json("/v2/models/m").await;
        assert_eq!(meta["name"], "m", "listed with its metadata: {meta}");
        let rows: Vec<[f64; 4]> = (0..100)
            .map(|i| [4.5 + f64::from(i) * 0.03, 3.0, 1.5, 0.3])
            .collect();
        let tasks: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let (gw, row) = (Arc::clone(&gw), *row);
                tokio::spawn(async move {
                    let c = if i % 2 == 0 { h1_client() } else { h2_client() };
                    ask(&gw, &c, "m", row, false).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        assert_eq!(loads(&gw, "m", "ok").await, 1.0, "one load for all");
        let cold: Vec<&Answer> = answers.iter().filter(|a| a.cold).collect();
        assert!(!cold.is_empty(), "the first answers waited for the load");
        assert!(
            cold.iter().all(|a| a.timing.contains("load;dur=")),
            "{cold:?}"
        );
        // Each answer the model's own: what it answers now, loaded, to the same row.
        let c = h2_client();
        for (row, a) in rows.iter().zip(&answers) {
            assert_eq!(a.status, 200, "{:?}", a.body);
            let again = ask(&gw, &c, "m", *row, true).await;
            assert!(!again.cold);
            assert!(
                a.answers(&again.value()),
                "{:?} against {:?}",
                a.body,
                again.body
            );
        }
        let listed = index(&gw).await;
        assert_eq!(listed["m:1"]["state"], "READY");
        assert!(
            listed["m:1"]["bytes"].as_u64().unwrap() > 64 * 64 * 4,
            "{listed:?}"
        );
        let stats = gw.get_json("/stats").await;
        assert_eq!(stats["on_demand"]["loads"], 1, "{stats}");
        assert_eq!(stats["on_demand"]["loaded"], 1);
        assert_eq!(gw.metric("infergate_models_loaded").await, 1.0);
    });
}

/// 50 generated tabular models and two image models, a budget that fits about five of
/// the tabular ones beside one image model, and a minute of round-robin traffic from 8
/// clients over h1 and h2, the cache bypassed: no request fails, every answer is its
/// model's own, and neither the resident bytes nor the process's RSS pass the budget.
#[test]
fn fifty_models_round_robin_in_a_budget_of_about_five_over_h1_and_h2() {
    const TABULAR: usize = 50;
    let root = tempfile::tempdir().unwrap();
    for i in 0..TABULAR {
        write_mlp(root.path(), &format!("t{i:02}"), i as u64, 256);
    }
    write_lite0(root.path(), "img-a");
    write_lite0(root.path(), "img-b");
    let mut names: Vec<String> = (0..TABULAR).map(|i| format!("t{i:02}")).collect();
    names.push("img-a".into());
    names.push("img-b".into());

    // What each model answers, and what each takes once loaded, from a gateway without a
    // budget.
    let (truth, tab_bytes, img_bytes) = {
        let gw = Gateway::start(on_demand(root.path()));
        runtime().block_on(async {
            let c = h2_client();
            let mut truth = HashMap::new();
            for name in &names {
                let a = if name.starts_with("img") {
                    ask_image(&gw, &c, name).await
                } else {
                    ask(&gw, &c, name, ROW, true).await
                };
                assert_eq!(a.status, 200, "{name}: {:?}", a.body);
                assert!(a.cold, "{name}: the first answer loads");
                truth.insert(name.clone(), a.value());
            }
            let listed = index(&gw).await;
            let bytes = |key: &str| listed[key]["bytes"].as_u64().unwrap();
            (truth, bytes("t00:1"), bytes("img-a:1"))
        })
    };
    assert!(
        img_bytes > 10 << 20 && tab_bytes > 200 << 10,
        "measured {img_bytes} and {tab_bytes} bytes"
    );
    let budget = img_bytes + tab_bytes * 9 / 2;

    let gw = Arc::new(Gateway::start(
        on_demand(root.path()).env("INFERGATE_REPOSITORY__MEMORY_BUDGET_BYTES", budget),
    ));
    let at_rest = gw.rss_kib() * 1024;
    let stop = Arc::new(AtomicBool::new(false));
    let max_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (gw, stop, max_rss) = (Arc::clone(&gw), Arc::clone(&stop), Arc::clone(&max_rss));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max_rss.fetch_max(gw.rss_kib() * 1024, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let truth = Arc::new(truth);
    let names = Arc::new(names);
    runtime().block_on(async {
        let started = Instant::now();
        let mut clients = Vec::new();
        for k in 0..8usize {
            let (gw, truth, names) = (Arc::clone(&gw), Arc::clone(&truth), Arc::clone(&names));
            clients.push(tokio::spawn(async move {
                let c = if k % 2 == 0 { h1_client() } else { h2_client() };
                let (mut answered, mut cold) = (0, 0);
                let mut i = k;
                while started.elapsed() < Duration::from_secs(60) {
                    let name = &names[i % names.len()];
                    let a = if name.starts_with("img") {
                        ask_image(&gw, &c, name).await
                    } else {
                        ask(&gw, &c, name, ROW, true).await
                    };
                    assert_eq!(a.status, 200, "{name}: {:?}", a.body);
                    assert!(
                        a.answers(&truth[name]),
                        "{name} answered another's numbers: {:?}, not {}",
                        a.body,
                        truth[name]
                    );
                    answered += 1;
                    cold += usize::from(a.cold);
                    i += 3;
                }
                (answered, cold)
            }));
        }
        let mut max_resident = 0;
        while started.elapsed() < Duration::from_secs(60) {
            let stats = gw.get_json("/stats").await;
            let resident = stats["on_demand"]["resident_bytes"].as_u64().unwrap();
            assert!(
                resident <= budget,
                "{resident} bytes resident, budget {budget}"
            );
            max_resident = max_resident.max(resident);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (mut answered, mut cold) = (0, 0);
        for client in clients {
            let (a, c) = client.await.unwrap();
            answered += a;
            cold += c;
        }
        stop.store(true, Ordering::Relaxed);
        let stats = gw.get_json("/stats").await;
        let evicted = stats["on_demand"]["evicted_for_memory"].as_u64().unwrap();
        let loaded = gw.metric("infergate_models_loaded").await;
        eprintln!(
            "{answered} answers in a minute, {cold} cold; {evicted} evictions; at most \
             {max_resident} of {budget} bytes resident; {loaded} loaded at the end; RSS at \
             rest {} MiB, at most {} MiB",
            at_rest >> 20,
            max_rss.load(Ordering::Relaxed) >> 20
        );
        assert!(answered > 500 && cold > 100 && evicted > 100, "{stats}");
    });
    sampler.join().unwrap();
    // The budget, plus what serving costs beside it: two compute threads' activations for
    // batches of up to 8 images, uploads being decoded, jemalloc's freed pages not yet
    // returned (its decay time is 10 s). About 65 MiB of it was seen here, alone or beside
    // other suites (RSS at most 160 MiB from 93-97 at rest).
    let bound = at_rest + budget + (96 << 20);
    let peak = max_rss.load(Ordering::Relaxed);
    assert!(
        peak <= bound,
        "RSS reached {} MiB, bound {} MiB",
        peak >> 20,
        bound >> 20
    );
}

/// A load that fails is refused at once with `Retry-After`, without a new load, until its
/// backoff passes or its files change; every other model serves meanwhile.
#[test]
fn a_failed_load_is_refused_at_once_with_retry_after_until_its_files_change() {
    let root = tempfile::tempdir().unwrap();
    let bad = write_mlp(root.path(), "bad", 1, 16);
    write_mlp(root.path(), "good", 2, 16);
    write_toml(root.path(), "bad", "idle_unload_s = 1\n");
    let gw = Gateway::start(on_demand(root.path()));
    runtime().block_on(async {
        let c = h2_client();
        let first = ask(&gw, &c, "bad", ROW, true).await;
        assert_eq!((first.status, first.cold), (200, true), "{:?}", first.body);
        wait_for("the idle unload", Duration::from_secs(20), async || {
            state(&gw, "bad").await == "UNLOADED"
        })
        .await;
        assert_eq!(
            gw.metric("infergate_model_evictions_total{reason=\"idle\"}")
                .await,
            1.0
        );
        // Broken behind the repository's back (no look since: polling is off).
        let weights = std::fs::read(bad.join("model.safetensors")).unwrap();
        std::fs::write(bad.join("model.safetensors"), &weights[..64]).unwrap();
        let failed = ask(&gw, &c, "bad", ROW, true).await;
        assert_eq!(failed.status, 503, "{:?}", failed.body);
        assert_eq!(failed.body["error"]["code"], "model_unavailable");
        assert_eq!(failed.retry_after, Some(5), "repository.load_retry_ms");
        let mut slowest = 0.0f64;
        for _ in 0..20 {
            let again = ask(&gw, &c, "bad", ROW, true).await;
            assert_eq!(again.status, 503);
            assert!(again.retry_after.is_some_and(|s| (1..=5).contains(&s)));
            slowest = slowest.max(again.total_ms());
        }
        eprintln!("20 refusals during the backoff, the slowest {slowest:.3} ms in the gateway");
        assert_eq!(
            loads(&gw, "bad", "error").await,
            1.0,
            "no load during the backoff"
        );
        assert_eq!(state(&gw, "bad").await, "UNAVAILABLE");
        let good = ask(&gw, &c, "good", ROW, true).await;
        assert_eq!(good.status, 200, "{:?}", good.body);
        // Mended, and looked at (SIGHUP): served again at once.
        std::fs::write(bad.join("model.safetensors"), &weights).unwrap();
        gw.signal("HUP");
        wait_for("the mended model", Duration::from_secs(20), async || {
            ask(&gw, &c, "bad", ROW, true).await.status == 200
        })
        .await;
        assert_eq!(loads(&gw, "bad", "ok").await, 2.0);
    });
}

/// An answer cached for a model no longer in memory is served from L1, and after a
/// restart from Redis, without loading the model.
#[test]
fn a_cached_answer_for_an_unloaded_model_is_a_hit_without_a_load_also_after_a_restart() {
    let redis = RedisServer::start();
    let root = tempfile::tempdir().unwrap();
    write_mlp(root.path(), "m", 3, 16);
    write_toml(root.path(), "m", "idle_unload_s = 1\n");
    let options = || on_demand(root.path()).env("INFERGATE_REDIS__URL", redis.url());
    let redis_ok = async |gw: &Gateway| {
        wait_for("Redis", Duration::from_secs(20), async || {
            gw.get_json("/ready").await["checks"]["redis"] == "ok"
        })
        .await;
    };
    let first = {
        let gw = Gateway::start(options());
        runtime().block_on(async {
            redis_ok(&gw).await;
            let c = h1_client();
            let first = ask(&gw, &c, "m", ROW, false).await;
            assert_eq!(
                (first.status, first.cache.as_str(), first.cold),
                (200, "miss", true)
            );
            wait_for("the idle unload", Duration::from_secs(20), async || {
                state(&gw, "m").await == "UNLOADED"
            })
            .await;
            let hit = ask(&gw, &c, "m", ROW, false).await;
            assert_eq!(
                (hit.status, hit.cache.as_str(), hit.cold),
                (200, "hit-l1", false)
            );
            assert!(hit.answers(&first.value()));
            assert_eq!(loads(&gw, "m", "ok").await, 1.0);
            assert_eq!(state(&gw, "m").await, "UNLOADED");
            first
        })
    };
    let gw = Gateway::start(options());
    runtime().block_on(async {
        redis_ok(&gw).await;
        let hit = ask(&gw, &h2_client(), "m", ROW, false).await;
        assert_eq!(
            (hit.status, hit.cache.as_str(), hit.cold),
            (200, "hit-l2", false)
        );
        assert!(hit.answers(&first.value()));
        assert_eq!(loads(&gw, "m", "ok").await, 0.0);
        assert_eq!(state(&gw, "m").await, "UNLOADED");
    });
}

/// An image model idle past its `idle_unload_s` is unloaded and the process's memory
/// falls back; a request in flight when its model is unloaded finishes on it.
#[test]
fn idle_unload_gives_the_memory_back_and_a_request_in_flight_finishes_across_an_unload() {
    let root = tempfile::tempdir().unwrap();
    write_lite0(root.path(), "img");
    write_toml(root.path(), "img", "idle_unload_s = 2\n");
    write_mlp(root.path(), "slow", 5, 16);
    let gw = Arc::new(Gateway::start(
        on_demand(root.path()).env("INFERGATE_MODEL__FORWARD_DELAY_MS", 800),
    ));
    runtime().block_on(async {
        let c = h2_client();
        // Freed pages of the load at the look that listed it are returned first.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let before = gw.rss_kib();
        let a = ask_image(&gw, &c, "img").await;
        assert_eq!((a.status, a.cold), (200, true), "{:?}", a.body);
        let bytes = index(&gw).await["img:1"]["bytes"].as_u64().unwrap();
        let loaded = gw.rss_kib();
        assert!(
            loaded.saturating_sub(before) * 1024 > bytes / 2,
            "RSS grew {} KiB for {bytes} bytes",
            loaded.saturating_sub(before)
        );
        wait_for("the idle unload", Duration::from_secs(20), async || {
            state(&gw, "img").await == "UNLOADED"
        })
        .await;
        // jemalloc gives freed pages back within its decay time (10 s).
        wait_for("the memory back", Duration::from_secs(30), async || {
            loaded.saturating_sub(gw.rss_kib()) * 1024 > bytes / 2
        })
        .await;
        eprintln!(
            "RSS {} MiB before the load, {} MiB loaded ({bytes} bytes measured), {} MiB after \
             the idle unload",
            before >> 10,
            loaded >> 10,
            gw.rss_kib() >> 10
        );

        // In flight across an unload through the API: answered by the model it chose.
        let warm = ask(&gw, &c, "slow", ROW, true).await;
        assert_eq!(warm.status, 200);
        let in_flight = {
            let gw = Arc::clone(&gw);
            tokio::spawn(async move { ask(&gw, &h1_client(), "slow", ROW, true).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            post(&gw, "/v2/repository/models/slow/unload", None).await.0,
            200
        );
        let done = in_flight.await.unwrap();
        assert_eq!(done.status, 200, "{:?}", done.body);
        assert!(done.answers(&warm.value()));
        assert_eq!(
            gw.metric("infergate_model_evictions_total{reason=\"unload\"}")
                .await,
            1.0
        );
    });
}

/// Within its minimum age a version is not evicted (a load that needs its room waits,
/// then is told `insufficient_memory`); once old enough it is; pinned and eager versions
/// never are; the repository API's load pins until the API unloads.
#[test]
fn young_pinned_and_eager_models_are_never_evicted() {
    let root = tempfile::tempdir().unwrap();
    for (i, name) in ["pinned", "a", "b", "eager", "api"].iter().enumerate() {
        write_mlp(root.path(), name, i as u64, 256);
    }
    write_toml(root.path(), "pinned", "pinned = true\n");
    write_toml(root.path(), "eager", "load = \"eager\"\n");
    let bytes = {
        let gw = Gateway::start(on_demand(root.path()));
        runtime().block_on(async {
            assert_eq!(ask(&gw, &h1_client(), "a", ROW, true).await.status, 200);
            index(&gw).await["a:1"]["bytes"].as_u64().unwrap()
        })
    };
    // Room for two of them (the eager one is outside the budget).
    let gw = Gateway::start(
        on_demand(root.path())
            .env("INFERGATE_REPOSITORY__MEMORY_BUDGET_BYTES", bytes * 5 / 2)
            .env("INFERGATE_REPOSITORY__MIN_RESIDENT_MS", 3000),
    );
    let refused = async |gw: &Gateway, model: &str| {
        let r = h2_client()
            .post(gw.url(&format!("/predict?model={model}")))
            .header("x-request-timeout", "1000ms")
            .header("cache-control", "no-cache")
            .json(&json!({ "features": ROW }))
            .send()
            .await
            .unwrap();
        let a = answer(r).await;
        assert_eq!(a.status, 503, "{model}: {:?}", a.body);
        assert_eq!(a.body["error"]["code"], "insufficient_memory");
        assert!(a.retry_after.is_some());
    };
    runtime().block_on(async {
        let c = h2_client();
        assert_eq!(state(&gw, "eager").await, "READY");
        for name in ["pinned", "a"] {
            let r = ask(&gw, &c, name, ROW, true).await;
            assert_eq!((r.status, r.cold), (200, true), "{name}: {:?}", r.body);
        }
        // `a` is too young to make room for `b`: `b` waits, then is refused.
        refused(&gw, "b").await;
        assert_eq!(state(&gw, "a").await, "READY");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = ask(&gw, &c, "b", ROW, true).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(
            state(&gw, "a").await,
            "UNLOADED",
            "old enough, evicted for b"
        );
        assert_eq!(state(&gw, "pinned").await, "READY");
        // The API's load: loaded now (once `b` is old enough to make room), and pinned.
        assert_eq!(
            post(&gw, "/v2/repository/models/api/load", None).await.0,
            200
        );
        assert_eq!(state(&gw, "api").await, "READY");
        assert_eq!(state(&gw, "b").await, "UNLOADED");
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Nothing can make room now: both loaded versions are pinned.
        refused(&gw, "a").await;
        assert_eq!(state(&gw, "api").await, "READY");
        assert_eq!(state(&gw, "pinned").await, "READY");
        assert_eq!(state(&gw, "eager").await, "READY");
        assert_eq!(
            post(&gw, "/v2/repository/models/api/unload", None).await.0,
            200
        );
        let r = ask(&gw, &c, "a", ROW, true).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(state(&gw, "pinned").await, "READY");
        assert_eq!(state(&gw, "eager").await, "READY");
        assert_eq!(
            gw.metric("infergate_model_evictions_total{reason=\"memory\"}")
                .await,
            2.0
        );
    });
}

/// Traffic over 50 models by Zipf's law (s = 1.1) into a budget of about five: the most
/// asked-for models stay loaded. Prints the share of requests that waited for a load.
#[test]
fn skewed_traffic_keeps_the_hot_set_loaded() {
    const MODELS: usize = 50;
    let root = tempfile::tempdir().unwrap();
    for i in 0..MODELS {
        write_mlp(root.path(), &format!("z{i:02}"), i as u64, 256);
    }
    let file = std::fs::metadata(root.path().join("z00/1/model.safetensors"))
        .unwrap()
        .len();
    let gw = Gateway::start(
        on_demand(root.path()).env("INFERGATE_REPOSITORY__MEMORY_BUDGET_BYTES", file * 11 / 2),
    );
    // Zipf weights over the ranks, and a seeded draw from them.
    let weights: Vec<f64> = (1..=MODELS).map(|k| 1.0 / (k as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut state_ = 0x2545_F491_4F6C_DD1Du64;
    let mut draw = move || {
        state_ ^= state_ << 13;
        state_ ^= state_ >> 7;
        state_ ^= state_ << 17;
        let mut u = (state_ >> 11) as f64 / (1u64 << 53) as f64 * total;
        weights
            .iter()
            .position(|w| {
                u -= w;
                u <= 0.0
            })
            .unwrap_or(MODELS - 1)
    };
    runtime().block_on(async {
        let c = h2_client();
        let (mut cold, n) = (0, 2000);
        for _ in 0..n {
            let model = format!("z{:02}", draw());
            let a = ask(&gw, &c, &model, ROW, true).await;
            assert_eq!(a.status, 200, "{model}: {:?}", a.body);
            cold += usize::from(a.cold);
        }
        eprintln!(
            "Zipf 1.1 over {MODELS} models, about 5 fit: {cold} of {n} requests waited for a \
             load ({:.1} %)",
            cold as f64 * 100.0 / f64::from(n)
        );
        for hot in ["z00", "z01"] {
            assert_eq!(state(&gw, hot).await, "READY", "{hot} is the hot set");
        }
    });
}

/// Versions on demand through the rest of the gateway: an ONNX model, a shadow that is not
/// loaded (skipped and counted, its load asked for, never waited on) then compared, and
/// the cold request's load time in its log row.
#[test]
fn onnx_shadows_and_the_log_row_work_on_demand() {
    let pg = PostgresServer::start();
    let spool = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let export = support::repo().join("tests/fixtures/onnx/sklearn-iris-logreg");
    for v in ["1", "2"] {
        let dir = root.path().join("onnx").join(v);
        std::fs::create_dir_all(&dir).unwrap();
        for file in std::fs::read_dir(&export).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), dir.join(file.file_name())).unwrap();
        }
    }
    write_toml(
        root.path(),
        "onnx",
        "[version_policy]\nall = true\n[traffic]\n\"1\" = 1\n[shadow]\nversion = \"2\"\nshare = 1.0\n",
    );
    let gw = Gateway::start(on_demand(root.path()).logging_to(&pg.url(), spool.path()));
    runtime().block_on(async {
        let c = h1_client();
        let first = ask(&gw, &c, "onnx", ROW, true).await;
        assert_eq!((first.status, first.cold), (200, true), "{:?}", first.body);
        assert_eq!(first.body["model"]["version"], "1");
        wait_for("the candidate loaded", Duration::from_secs(20), async || {
            index(&gw).await["onnx:2"]["state"] == "READY"
        })
        .await;
        for _ in 0..5 {
            let a = ask(&gw, &c, "onnx", ROW, true).await;
            assert_eq!((a.status, a.cold), (200, false));
        }
        let counted = async |outcome: &str| {
            gw.metric(&format!(
                "infergate_shadow_requests_total{{model=\"onnx\",candidate=\"2\",outcome=\"{outcome}\"}}"
            ))
            .await
        };
        assert_eq!(counted("not_loaded").await, 1.0);
        wait_for("5 comparisons", Duration::from_secs(20), async || {
            counted("compared").await >= 5.0
        })
        .await;
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pg.has_table("predictions") || pg.count("predictions WHERE model_name = 'onnx'") < 6 {
        assert!(Instant::now() < deadline, "rows did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pg.count("predictions WHERE model_name = 'onnx' AND model_load_us > 0"),
        1,
        "the cold request's row holds its load time"
    );
    assert_eq!(
        pg.count("predictions WHERE model_name = 'onnx' AND model_load_us IS NULL"),
        5
    );
}
