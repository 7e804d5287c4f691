//! The Redis tier against a real `redis-server` each test starts and stops itself: hits
//! across gateway restarts, expiry, garbage under our key, Redis killed and frozen under
//! load, recovery without restarting the gateway.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::time::Duration;

use tokio::time::Instant;

use futures_util::future::join_all;
use infergate::cache::key::{CacheKey, Input};
use infergate::infer::demo;
use infergate::infer::model::{Batch, Model as _};
use reqwest::Client;
use serde_json::{Value, json};
use support::redis_server::RedisServer;
use support::{Gateway, Options, h2_client, runtime};

fn with_redis(redis: &RedisServer) -> Options {
    Options::default()
        .env("INFERGATE_REDIS__URL", redis.url())
        // Quick to notice an outage and a recovery in a test.
        .env("INFERGATE_REDIS__HEALTH_INTERVAL_MS", 100)
        .env("INFERGATE_REDIS__BREAKER_COOLDOWN_MS", 200)
}

async fn predict(gw: &Gateway, client: &Client, features: [f64; 4]) -> (u16, String, Value) {
    let r = client
        .post(gw.url("/predict"))
        .json(&json!({ "features": features }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, cache, r.json().await.unwrap_or(Value::Null))
}

fn redis_key(features: [f64; 4]) -> String {
    let f: Vec<f32> = features.iter().map(|&v| v as f32).collect();
    CacheKey::new("iris-mlp", "1.0.0", Input::Features(&f)).redis_key()
}

/// Waits (up to 5 s) until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn ready_redis(gw: &Gateway, client: &Client) -> String {
    let r: Value = client
        .get(gw.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["checks"]["redis"].as_str().unwrap().to_owned()
}

#[test]
fn hits_survive_a_gateway_restart_and_expire_after_the_ttl() {
    let redis = RedisServer::start();
    let features = [6.7, 3.1, 4.4, 1.4];
    let key = redis_key(features);
    let rt = runtime();
    // Tabular only: the second gateway must be up within the 2 s TTL, also on a busy
    // machine (the image model's warm-up is most of a start).
    {
        let gw = Gateway::start(
            with_redis(&redis)
                .tabular_only()
                .env("INFERGATE_CACHE__TTL_S", 2),
        );
        rt.block_on(async {
            let client = h2_client();
            assert_eq!(predict(&gw, &client, features).await.1, "miss");
            assert_eq!(predict(&gw, &client, features).await.1, "hit-l1");
            assert_eq!(ready_redis(&gw, &client).await, "ok");
        });
        eventually("the answer stored in Redis", || redis.get(&key).is_some());
        assert_eq!(redis.keys("infergate:v1:iris-mlp:*"), vec![key.clone()]);
    }
    let gw = Gateway::start(
        with_redis(&redis)
            .tabular_only()
            .env("INFERGATE_CACHE__TTL_S", 2),
    );
    rt.block_on(async {
        let client = h2_client();
        let (_, cache, answer) = predict(&gw, &client, features).await;
        assert_eq!(cache, "hit-l2", "a fresh gateway finds the answer in Redis");
        assert_eq!(answer["cached"], true);
        assert_eq!(
            predict(&gw, &client, features).await.1,
            "hit-l1",
            "and L1 was filled"
        );
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            predict(&gw, &client, features).await.1,
            "miss",
            "both tiers expired"
        );
    });
}

#[test]
fn image_answers_survive_a_gateway_restart_in_redis() {
    const CAT: &[u8] = include_bytes!("../fixtures/images/cat.png");
    let redis = RedisServer::start();
    let rt = runtime();
    let upload = |gw: &Gateway| {
        let url = gw.url("/predict");
        async move {
            let r = h2_client()
                .post(url)
                .header("content-type", "image/png")
                .body(CAT)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
            let v: Value = r.json().await.unwrap();
            (cache, v)
        }
    };
    let first = {
        let gw = Gateway::start(with_redis(&redis));
        let (cache, answer) = rt.block_on(upload(&gw));
        assert_eq!(cache, "miss");
        eventually("the image answer stored in Redis", || {
            !redis.keys("infergate:v1:efficientnet-lite0:*").is_empty()
        });
        answer
    };
    let gw = Gateway::start(with_redis(&redis));
    let (cache, again) = rt.block_on(upload(&gw));
    assert_eq!(
        cache, "hit-l2",
        "a fresh gateway finds the image answer in Redis"
    );
    assert_eq!(again["predictions"], first["predictions"]);
    assert_eq!(again["image_hash"], first["image_hash"]);
    assert_eq!(again["cached"], true);
    assert_eq!(rt.block_on(upload(&gw)).0, "hit-l1");
}

#[test]
fn garbage_under_our_key_is_a_miss_and_gets_overwritten() {
    let redis = RedisServer::start();
    let features = [5.0, 3.6, 1.4, 0.2];
    let key = redis_key(features);
    redis.set(&key, b"\x00not an infergate answer\xff");
    let gw = Gateway::start(with_redis(&redis));
    runtime().block_on(async {
        let client = h2_client();
        let (status, cache, answer) = predict(&gw, &client, features).await;
        assert_eq!((status, cache.as_str()), (200, "miss"));
        assert_eq!(answer["prediction"], "setosa");
        assert!(
            gw.metric("infergate_l2_errors_total{kind=\"garbage\"}")
                .await
                >= 1.0
        );
    });
    eventually("the garbage overwritten", || {
        redis.get(&key).is_some_and(|v| v.starts_with(b"IGA2"))
    });
}

#[test]
fn redis_killed_under_load_fails_no_request_and_recovers_without_a_restart() {
    let mut redis = RedisServer::start();
    let gw = Gateway::start(with_redis(&redis));
    let rt = runtime();
    let client = h2_client();
    // Steady mixed load (repeats and new inputs) while Redis dies.
    let load = |round: u32| {
        let (gw, client) = (&gw, &client);
        async move {
            let requests = (0..40u32).map(|i| {
                let x = f64::from((round * 7 + i) % 50);
                predict(
                    gw,
                    client,
                    [4.4 + x / 10.0, 3.0, 1.3 + x / 20.0, 0.2 + x / 50.0],
                )
            });
            join_all(requests).await
        }
    };
    rt.block_on(async {
        for round in 0..5 {
            for (status, _, _) in load(round).await {
                assert_eq!(status, 200);
            }
        }
    });
    redis.kill();
    rt.block_on(async {
        for round in 5..30 {
            for (status, cache, _) in load(round).await {
                assert_eq!(status, 200, "a Redis outage never fails a request");
                assert_ne!(cache, "hit-l2");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ready_redis(&gw, &client).await != "down" {
            assert!(Instant::now() < deadline, "/ready never said redis down");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = client.get(gw.url("/ready")).send().await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "Redis down degrades, it does not make the replica unready"
        );
        assert!(gw.metric("infergate_l2_circuit_open").await == 1.0);
    });

    redis.restart();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while ready_redis(&gw, &client).await != "ok" {
            assert!(Instant::now() < deadline, "/ready never saw Redis back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // An answer only Redis knows (this gateway never computed it) comes back as hit-l2.
    let features = [7.2, 3.6, 6.1, 2.5];
    let model = demo::load().unwrap();
    let data: Vec<f32> = features.iter().map(|&v| v as f32).collect();
    let probs = model
        .forward(&Batch {
            rows: 1,
            features: 4,
            data,
        })
        .unwrap();
    let answer = infergate::encode::tabular(model.info(), probs.row(0));
    redis.set(&redis_key(features), &answer.encode());
    rt.block_on(async {
        let (status, cache, body) = predict(&gw, &client, features).await;
        assert_eq!((status, cache.as_str()), (200, "hit-l2"));
        assert_eq!(body["prediction"], "virginica");
    });
}

#[test]
fn a_frozen_redis_costs_at_most_the_timeout_and_then_nothing() {
    let redis = RedisServer::start();
    let gw = Gateway::start(
        with_redis(&redis)
            .env("INFERGATE_REDIS__TIMEOUT_MS", 100)
            .env("INFERGATE_REDIS__CONNECT_TIMEOUT_MS", 100),
    );
    let rt = runtime();
    let client = h2_client();
    rt.block_on(async {
        assert_eq!(predict(&gw, &client, [5.9, 3.0, 5.1, 1.8]).await.1, "miss");
    });
    redis.freeze(true);
    rt.block_on(async {
        for i in 0..20u32 {
            let x = f64::from(i) / 10.0;
            let (status, cache, _) = predict(&gw, &client, [5.0 + x, 3.0, 4.0, 1.0]).await;
            assert_eq!((status, cache.as_str()), (200, "miss"), "request {i}");
        }
        assert!(
            gw.metric("infergate_l2_errors_total{kind=\"timeout\"}")
                .await
                >= 1.0
        );
        assert_eq!(ready_redis(&gw, &client).await, "down");
    });
    redis.freeze(false);
}

#[test]
fn the_password_comes_from_a_secret_file_and_is_never_printed() {
    let password = "s3cret pw/with:odd@chars";
    let redis = RedisServer::start_with_password(Some(password));
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("redis_password");
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    let features = [6.1, 2.8, 4.7, 1.2];
    let gw =
        Gateway::start(with_redis(&redis).env("INFERGATE_REDIS__PASSWORD_FILE", secret.display()));
    runtime().block_on(async {
        let client = h2_client();
        assert_eq!(ready_redis(&gw, &client).await, "ok");
        assert_eq!(predict(&gw, &client, features).await.1, "miss");
    });
    eventually("the answer stored in Redis", || {
        redis.get(&redis_key(features)).is_some()
    });
    assert!(!gw.logs().contains(password));
    let printed = std::process::Command::new(support::bin())
        .args(["print-config", "--config-dir"])
        .arg(dir.path())
        .env("INFERGATE_REDIS__URL", redis.url())
        .env("INFERGATE_REDIS__PASSWORD_FILE", &secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(stdout.contains("password = \"[redacted]\""), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
}

#[test]
fn rediss_urls_speak_tls() {
    let redis = RedisServer::start_tls();
    let features = [5.7, 2.8, 4.1, 1.3];
    let gw = Gateway::start(with_redis(&redis));
    runtime().block_on(async {
        let client = h2_client();
        assert_eq!(ready_redis(&gw, &client).await, "ok");
        assert_eq!(predict(&gw, &client, features).await.1, "miss");
    });
    eventually("the answer stored in Redis over TLS", || {
        redis.get(&redis_key(features)).is_some()
    });
}

#[test]
fn ready_require_redis_takes_the_replica_out_of_rotation_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let gw = Gateway::start(with_redis(&redis).env("INFERGATE_READY__REQUIRE", "[\"redis\"]"));
    let rt = runtime();
    let status = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let r = h2_client().get(gw.url("/ready")).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap())
        })
    };
    assert_eq!(status(&rt).0, 200);
    redis.kill();
    // The health loop notices within a few intervals.
    eventually("/ready 503 while required Redis is down", || {
        let (code, v) = status(&rt);
        code == 503 && v["required_down"] == json!(["redis"])
    });
    // Predictions still answer (degraded: L1 only).
    let (code, _, _) = rt.block_on(predict(&gw, &h2_client(), [5.0, 3.0, 1.6, 0.2]));
    assert_eq!(code, 200);
    redis.restart();
    eventually("/ready 200 once Redis is back", || status(&rt).0 == 200);
}
