//! Adaptive admission under an open-loop load far above a slow model's capacity: the
//! gateway sheds with 503 and a `Retry-After`, counts what it shed by reason, stays ready,
//! and keeps serving (cache hits are never shed). Latency figures are the benchmark's
//! business (scripts/bench/overload.sh), not this test's.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use support::{Gateway, Options, SETOSA, h1_client, h2_client, runtime};

#[test]
fn load_above_capacity_is_shed_with_retry_after_and_the_gateway_stays_ready() {
    // 50 ms a pass, one row a pass, one thread: 20 predictions a second at most.
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_MODEL__FORWARD_DELAY_MS", 50)
            .env("INFERGATE_COMPUTE__THREADS", 1)
            .env("INFERGATE_BATCH__MAX_SIZE", 1),
    );
    let rt = runtime();
    rt.block_on(async {
        let client = h2_client();
        // Cached before the load: a hit costs no model work and is never shed.
        let warm = client
            .post(gw.url("/predict"))
            .json(&json!({"features": SETOSA}));
        assert_eq!(warm.send().await.unwrap().status(), 200);
        let mut ready_during = Vec::new();
        let mut hits_during = Vec::new();
        let mut tasks = Vec::new();
        // 200 a second for 3 s, whatever the answers take.
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        for i in 0..600u32 {
            tick.tick().await;
            let (c, url) = (client.clone(), gw.url("/predict"));
            tasks.push(tokio::spawn(async move {
                let body = json!({"features": [4.0 + f64::from(i) / 100.0, 3.0, 1.4, 0.2]});
                let r = c.post(url).json(&body).send().await.unwrap();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap();
                (status, retry_after, body["error"]["code"].clone())
            }));
            if i % 100 == 50 {
                let ready = h1_client().get(gw.url("/ready")).send().await.unwrap();
                ready_during.push(ready.status().as_u16());
                let hit = client
                    .post(gw.url("/predict"))
                    .json(&json!({"features": SETOSA}))
                    .send()
                    .await
                    .unwrap();
                hits_during.push(hit.status().as_u16());
            }
        }
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        for t in tasks {
            let (status, retry_after, code) = t.await.unwrap();
            *by_status.entry(status).or_default() += 1;
            match status {
                200 => {}
                503 => {
                    assert_eq!(code, "overloaded");
                    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
                }
                // A request admitted just before the limit shrank may still run out of time.
                504 => assert_eq!(code, "deadline_exceeded"),
                other => panic!("unexpected {other} ({code})"),
            }
        }
        let shed = by_status.get(&503).copied().unwrap_or(0);
        let ok = by_status.get(&200).copied().unwrap_or(0);
        assert!(
            shed > 200,
            "most of 10x the capacity is shed: {by_status:?}"
        );
        assert!(
            ok >= 20,
            "and the model's capacity is served: {by_status:?}"
        );
        assert!(ready_during.iter().all(|&s| s == 200), "{ready_during:?}");
        assert!(hits_during.iter().all(|&s| s == 200), "{hits_during:?}");
        let counted = gw
            .metric("infergate_shed_total{model=\"iris-mlp\",reason=\"concurrency\"}")
            .await;
        assert_eq!(counted as usize, shed);
        let limit = gw
            .metric("infergate_admission_limit{model=\"iris-mlp\"}")
            .await;
        assert!(limit < 100.0, "the limit came down from its start: {limit}");
        // After the load, the gateway answers as before.
        let r = client
            .post(gw.url("/predict"))
            .header("cache-control", "no-cache")
            .json(&json!({"features": SETOSA}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let stats = gw.get_json("/stats").await;
        assert_eq!(stats["admission"][0]["model"], "iris-mlp", "{stats}");
    });
}
