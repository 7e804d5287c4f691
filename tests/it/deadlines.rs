//! End-to-end deadlines on a deliberately slow model (`model.forward_delay_ms`) with one
//! compute thread: a request whose deadline passes while it is queued gets 504 and is never
//! computed (`infergate_model_forwards_total` says so); one whose client goes away is
//! skipped; one coalesced onto a request that went away still gets its answer.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Value, json};
use support::{Gateway, Options, h1_client, h2_client, runtime};

/// Each forward pass of the tabular model takes this long.
const SLOW_MS: u64 = 600;
const FORWARDS: &str = "infergate_model_forwards_total{model=\"iris-mlp\"}";

fn slow_gateway() -> Gateway {
    Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_MODEL__FORWARD_DELAY_MS", SLOW_MS)
            .env("INFERGATE_COMPUTE__THREADS", 1)
            // One row per pass: what queues behind the busy thread is alone in its batch.
            .env("INFERGATE_BATCH__MAX_SIZE", 1),
    )
}

fn features(x: f64) -> Value {
    json!({"features": [x, 3.0, 1.4, 0.2]})
}

/// Sends one uncached prediction; its status and body.
async fn predict(
    client: &reqwest::Client,
    gw: &Gateway,
    body: &Value,
    timeout: Option<&str>,
) -> (u16, Value) {
    let mut req = client
        .post(gw.url("/predict"))
        .header("cache-control", "no-cache")
        .json(body);
    if let Some(t) = timeout {
        req = req.header("x-request-timeout", t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends an uncached prediction that keeps the only compute thread busy for `SLOW_MS`;
/// its status, once answered.
fn occupy_the_thread(client: &reqwest::Client, gw: &Gateway) -> tokio::task::JoinHandle<u16> {
    let (client, url) = (client.clone(), gw.url("/predict"));
    tokio::spawn(async move {
        let r = client
            .post(url)
            .header("cache-control", "no-cache")
            .json(&features(1.0))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    })
}

/// Waits until the metric `needle` reads `n` (or 20 s pass); what it reads.
async fn metric_reaches(gw: &Gateway, needle: &str, n: f64) -> f64 {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let got = gw.metric(needle).await;
        if got == n || Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Model work admitted and not finished.
const IN_FLIGHT: &str = "infergate_admission_in_flight{model=\"iris-mlp\"}";

#[test]
fn a_deadline_that_passes_in_the_queue_gets_504_and_is_never_computed() {
    let gw = slow_gateway();
    let rt = runtime();
    rt.block_on(async {
        for client in [h1_client(), h2_client()] {
            let base = gw.metric(FORWARDS).await;
            // The only compute thread is busy with this one for SLOW_MS.
            let busy = occupy_the_thread(&client, &gw);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let started = Instant::now();
            let (status, body) = predict(&client, &gw, &features(2.0), Some("150ms")).await;
            let took = started.elapsed();
            assert_eq!(status, 504, "{body}");
            assert_eq!(body["error"]["code"], "deadline_exceeded", "{body}");
            assert!(
                took < Duration::from_millis(SLOW_MS),
                "answered at its deadline, not after the busy pass: {took:?}"
            );
            assert_eq!(busy.await.unwrap(), 200);
            // Long after the thread came free, the expired row has still not been computed.
            tokio::time::sleep(Duration::from_millis(2 * SLOW_MS)).await;
            assert_eq!(
                gw.metric(FORWARDS).await,
                base + 1.0,
                "only the busy request ran"
            );
        }
        // The first expired while queued; the second may already have been refused at
        // admission (the busy request taught the model's best).
        let waited = gw
            .metric("infergate_deadline_exceeded_total{stage=\"waiting\"}")
            .await;
        assert!(waited >= 1.0, "{waited}");

        // Now the model's best is known (SLOW_MS): a shorter deadline is refused at once.
        const SHED: &str = "infergate_shed_total{model=\"iris-mlp\",reason=\"deadline\"}";
        let (base, shed_before) = (gw.metric(FORWARDS).await, gw.metric(SHED).await);
        let started = Instant::now();
        let (status, body) = predict(&h1_client(), &gw, &features(3.0), Some("50ms")).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (504, json!("deadline_exceeded"))
        );
        assert!(started.elapsed() < Duration::from_millis(SLOW_MS));
        assert_eq!(gw.metric(SHED).await, shed_before + 1.0);
        assert_eq!(gw.metric(FORWARDS).await, base);
        // gRPC's form is honoured too, and an unreadable ask is a 400.
        let resp = h2_client()
            .post(gw.url("/predict"))
            .header("cache-control", "no-cache")
            .header("grpc-timeout", "40m")
            .json(&features(4.0))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 504);
        let (status, body) = predict(&h1_client(), &gw, &features(5.0), Some("soon")).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("invalid_timeout"))
        );
        // The deadline is the request's own: one with time left is answered.
        let (status, _) = predict(&h1_client(), &gw, &features(6.0), Some("5s")).await;
        assert_eq!(status, 200);
    });
}

#[test]
fn a_client_that_goes_away_has_its_queued_work_skipped() {
    let gw = slow_gateway();
    let rt = runtime();
    rt.block_on(async {
        let base = gw.metric(FORWARDS).await;
        let client = h2_client();
        let busy = occupy_the_thread(&client, &gw);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Queued behind the busy pass, then abandoned: HTTP/2 resets the stream, and an
        // HTTP/1.1 client closes its connection.
        assert_eq!(metric_reaches(&gw, IN_FLIGHT, 1.0).await, 1.0);
        for gone in [h2_client(), h1_client()] {
            let queued = tokio::spawn({
                let (body, url) = (features(2.0), gw.url("/predict"));
                async move {
                    let _ = gone
                        .post(url)
                        .header("cache-control", "no-cache")
                        .json(&body)
                        .send()
                        .await;
                }
            });
            // Queued (admitted), then abandoned: its place is given back at once.
            assert_eq!(metric_reaches(&gw, IN_FLIGHT, 2.0).await, 2.0);
            queued.abort();
            assert_eq!(metric_reaches(&gw, IN_FLIGHT, 1.0).await, 1.0);
        }
        assert_eq!(busy.await.unwrap(), 200);
        tokio::time::sleep(Duration::from_millis(2 * SLOW_MS)).await;
        assert_eq!(
            gw.metric(FORWARDS).await,
            base + 1.0,
            "the abandoned rows never ran"
        );
        // Dropped from the batcher's queue, or (a full one-row batch leaves at once) from
        // the compute queue.
        let mut cancelled = 0.0;
        for stage in ["batch_queue", "compute_queue"] {
            let needle = format!("infergate_work_cancelled_total{{stage=\"{stage}\"}}");
            cancelled += gw.metric(&needle).await;
        }
        assert_eq!(cancelled, 2.0);

        // Coalesced: the first asker of a flight goes away, the second still gets the
        // answer, computed once.
        let base = gw.metric(FORWARDS).await;
        let busy = tokio::spawn({
            let (client, body, url) = (client.clone(), features(7.0), gw.url("/predict"));
            async move {
                let r = client.post(url).json(&body).send().await.unwrap();
                r.status().as_u16()
            }
        });
        assert_eq!(metric_reaches(&gw, IN_FLIGHT, 1.0).await, 1.0);
        let leader = tokio::spawn({
            let (gone, url) = (h2_client(), gw.url("/predict"));
            async move {
                let _ = gone.post(url).json(&features(8.0)).send().await;
            }
        });
        assert_eq!(metric_reaches(&gw, IN_FLIGHT, 2.0).await, 2.0);
        let follower = tokio::spawn({
            let (client, url) = (client.clone(), gw.url("/predict"));
            async move {
                let r = client.post(url).json(&features(8.0)).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        });
        // The follower has surely joined the flight (it is on a warm connection).
        tokio::time::sleep(Duration::from_millis(200)).await;
        leader.abort();
        let (status, body) = follower.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body["prediction"].is_string(), "{body}");
        assert_eq!(busy.await.unwrap(), 200);
        assert_eq!(metric_reaches(&gw, FORWARDS, base + 2.0).await, base + 2.0);
        tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
        assert_eq!(
            gw.metric(FORWARDS).await,
            base + 2.0,
            "features 8 computed once"
        );
    });
}
