//! The answer cache, coalescing and batching, seen from a client of the real binary:
//! `X-Cache` says where each answer came from, and the model seam's forward counter
//! (`infergate_model_forwards_total`) says how often the model really ran.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::time::Duration;

use futures_util::future::join_all;
use infergate::infer::demo;
use infergate::infer::model::{Batch, Model as _};
use reqwest::Client;
use serde_json::{Value, json};
use support::{Gateway, Options, SETOSA, h1_client, h2_client, runtime};

const FORWARDS: &str = "infergate_model_forwards_total{model=\"iris-mlp\"}";

async fn predict(
    gw: &Gateway,
    client: &Client,
    features: &[f64],
    no_cache: bool,
) -> (String, Value) {
    let mut req = client
        .post(gw.url("/predict"))
        .json(&json!({ "features": features }));
    if no_cache {
        req = req.header("cache-control", "no-cache");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
    (cache, r.json().await.unwrap())
}

#[test]
fn second_identical_request_hits_l1_and_bypass_recomputes() {
    let gw = Gateway::start(Options::default());
    runtime().block_on(async {
        let client = h2_client();
        let (c1, a1) = predict(&gw, &client, &SETOSA, false).await;
        // The same logical input spelled differently is the same key.
        let (c2, a2) = predict(&gw, &client, &[5.1, 3.5, 1.4, 0.2000], false).await;
        assert_eq!((c1.as_str(), c2.as_str()), ("miss", "hit-l1"));
        assert_eq!(
            (a1["cached"].as_bool(), a2["cached"].as_bool()),
            (Some(false), Some(true))
        );
        assert_eq!(a1["top_k"], a2["top_k"]);
        assert_ne!(
            a1["prediction_id"], a2["prediction_id"],
            "each answer has its own id"
        );

        let before = gw.metric(FORWARDS).await;
        let (c3, a3) = predict(&gw, &client, &SETOSA, true).await;
        assert_eq!(c3, "bypass");
        assert_eq!(a3["cached"], false);
        assert_eq!(
            gw.metric(FORWARDS).await,
            before + 1.0,
            "bypass runs the model"
        );

        let stats: Value = client
            .get(gw.url("/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats["cache_hits"], 1);
        assert_eq!(stats["cache_hits_l1"], 1);
        assert_eq!(stats["cache_misses"], 2);
        let rate = stats["cache_hit_rate"].as_f64().unwrap();
        assert!((rate - 1.0 / 3.0).abs() < 1e-9, "{rate}");
    });
}

#[test]
fn entries_expire_after_the_ttl() {
    let gw = Gateway::start(Options::default().env("INFERGATE_CACHE__TTL_S", 1));
    runtime().block_on(async {
        let client = h1_client();
        assert_eq!(predict(&gw, &client, &SETOSA, false).await.0, "miss");
        assert_eq!(predict(&gw, &client, &SETOSA, false).await.0, "hit-l1");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(predict(&gw, &client, &SETOSA, false).await.0, "miss");
    });
}

#[test]
fn two_hundred_identical_concurrent_requests_run_the_model_once() {
    // One compute thread and batching off, so the model is a narrow pipe the requests
    // pile up behind; over HTTP/2 they all arrive at once on a few connections.
    let gw = Gateway::start(
        Options::default()
            .env("INFERGATE_COMPUTE__THREADS", 1)
            .env("INFERGATE_BATCH__MAX_SIZE", 1),
    );
    runtime().block_on(async {
        let clients: Vec<Client> = (0..4).map(|_| h2_client()).collect();
        let features = [6.0, 2.9, 4.5, 1.5];
        let before = gw.metric(FORWARDS).await;
        let answers =
            join_all((0..200).map(|i| predict(&gw, &clients[i % 4], &features, false))).await;
        let forwards = gw.metric(FORWARDS).await - before;
        assert_eq!(forwards, 1.0, "identical requests share one inference");
        let first = &answers[0].1;
        for (cache, answer) in &answers {
            assert!(
                ["miss", "coalesced", "hit-l1"].contains(&cache.as_str()),
                "{cache}"
            );
            assert_eq!(answer["top_k"], first["top_k"]);
            assert_eq!(answer["prediction"], "versicolor");
        }
        assert_eq!(answers.iter().filter(|(c, _)| c == "miss").count(), 1);
        assert!(gw.metric("infergate_coalesced_total").await + count(&answers, "hit-l1") >= 199.0);
    });
}

fn count(answers: &[(String, Value)], cache: &str) -> f64 {
    answers.iter().filter(|(c, _)| c == cache).count() as f64
}

#[test]
fn distinct_concurrent_requests_are_batched_and_each_gets_its_own_answer() {
    let gw = Gateway::start(
        Options::default()
            .env("INFERGATE_COMPUTE__THREADS", 1)
            .env("INFERGATE_BATCH__MAX_SIZE", 16)
            .env("INFERGATE_BATCH__MAX_WAIT_MS", 20),
    );
    let model = demo::load().unwrap();
    runtime().block_on(async {
        let clients: Vec<Client> = (0..4).map(|_| h2_client()).collect();
        // Bursts of 64 distinct inputs until one forward pass has carried more than one
        // row (a burst on an idle machine usually forms batches at once).
        for burst in 0..10u32 {
            let inputs: Vec<[f64; 4]> = (0..64u32)
                .map(|i| {
                    let x = f64::from(burst * 64 + i);
                    [
                        4.5 + (x % 30.0) / 10.0,
                        2.0 + (x % 20.0) / 10.0,
                        1.0 + (x % 59.0) / 10.0,
                        0.1 + (x % 24.0) / 10.0,
                    ]
                })
                .collect();
            let answers = join_all(
                inputs
                    .iter()
                    .enumerate()
                    .map(|(i, f)| predict(&gw, &clients[i % 4], f, false)),
            )
            .await;
            for (input, (cache, answer)) in inputs.iter().zip(&answers) {
                assert_eq!(cache, "miss");
                // The same row alone through the same model gives the same answer.
                let data: Vec<f32> = input.iter().map(|&v| v as f32).collect();
                let alone = model
                    .forward(&Batch {
                        rows: 1,
                        features: 4,
                        data,
                    })
                    .unwrap();
                for score in answer["top_k"].as_array().unwrap() {
                    let id = score["class_id"].as_u64().unwrap() as usize;
                    let got = score["confidence"].as_f64().unwrap();
                    assert!(
                        (got - f64::from(alone.row(0)[id])).abs() < 1e-5,
                        "{input:?}: {answer}"
                    );
                }
            }
            let singles = gw
                .metric("infergate_batch_size_bucket{model=\"iris-mlp\",le=\"1\"}")
                .await;
            let all = gw
                .metric("infergate_batch_size_count{model=\"iris-mlp\"}")
                .await;
            if all > singles {
                let stats: Value = clients[0]
                    .get(gw.url("/stats"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(
                    stats["batches"]["max_size"].as_u64().unwrap() > 1,
                    "{stats}"
                );
                return;
            }
        }
        panic!("no forward pass ever carried more than one row");
    });
}
