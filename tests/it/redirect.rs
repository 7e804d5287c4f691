//! The plain-HTTP redirect listener (`[redirect]`): every request is sent to HTTPS at the
//! same host and path (301 for GET/HEAD, 308 otherwise), `/health` is answered in place,
//! and a request without a usable `Host` gets 400 JSON; nothing else is served in clear.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use crate::support;

use support::{Gateway, Options, free_port, runtime};

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

#[test]
fn plain_http_is_redirected_to_https_and_health_is_served() {
    let redirect = free_port();
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_REDIRECT__LISTEN", redirect),
    );
    let https_port = gw.addr.port();
    let rt = runtime();
    rt.block_on(async {
        let c = plain_client();
        let base = format!("http://{redirect}");
        let r = c
            .get(format!("{base}/predict?model=iris-mlp"))
            .header("host", "api.example.com:8080")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 301);
        assert_eq!(
            r.headers()["location"],
            format!("https://api.example.com:{https_port}/predict?model=iris-mlp").as_str()
        );
        let r = c
            .post(format!("{base}/predict"))
            .header("host", "[::1]")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 308, "a POST stays a POST");
        assert_eq!(
            r.headers()["location"],
            format!("https://[::1]:{https_port}/predict").as_str()
        );
        // /health is answered here, as on HTTPS; /metrics and the rest are not.
        let r = c.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["status"], "healthy");
        let r = c.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 301);
        // A Host that would send the client elsewhere is refused.
        let r = c
            .get(format!("{base}/"))
            .header("host", "evil.example/x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_host");
    });
    // Behind a proxy publishing 443, the URL names no port.
    let redirect = free_port();
    let gw = Gateway::start(
        Options::default()
            .tabular_only()
            .env("INFERGATE_REDIRECT__LISTEN", redirect)
            .env("INFERGATE_REDIRECT__HTTPS_PORT", 443),
    );
    rt.block_on(async {
        let r = plain_client()
            .head(format!("http://{redirect}/a/b"))
            .header("host", "api.example.com")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()["location"], "https://api.example.com/a/b");
    });
    drop(gw);
}
