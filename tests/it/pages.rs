//! The pages for people: the console at `/` and the API docs at `/docs`. Their answers
//! (types, security headers, encodings, ETags, `ui.enabled`, `ui.scope`) over HTTPS, h1
//! and h2; then both pages in a real browser (Debian's chromium, headless, over WebDriver:
//! `support::browser`), which checks that they load without a console error or a CSP
//! violation, ask no other host for anything, and work: Swagger UI's "Try it out" on
//! `/predict` with the cat photo (with and without an API key), and the console's numbers,
//! its canary split, an upload and an Iris row. Screenshots at desktop and phone widths go
//! to `target/pages/`, with the pages' first paint and the console's weight (`*-figures.txt`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::repository::write_version;
use crate::support::browser::Browser;
use crate::support::{
    Gateway, Options, SUITE_KEY, bare_builder, h1_client, h2_client, repo, runtime,
};

const CSP: &str = "content-security-policy";

/// The page's first contentful paint, ms after navigation started (`null` before it).
const FIRST_PAINT: &str = "const p = performance.getEntriesByName('first-contentful-paint')[0]; \
                           return p ? p.startTime : null";

/// Where the screenshots and figures go.
fn out_dir() -> PathBuf {
    let dir = repo().join("target/pages");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cat_photo() -> PathBuf {
    repo().join("tests/fixtures/images/cat.png")
}

/// Options for a gateway with keys on or off, whatever the suite's pass says.
fn keyed(keys: bool) -> Options {
    Options {
        suite_key: keys,
        ..Options::default()
    }
}

fn vendored(file: &str) -> Vec<u8> {
    std::fs::read(repo().join("src/http/pages/vendor/swagger-ui").join(file)).unwrap()
}

#[test]
fn pages_answer_with_their_types_security_headers_and_encodings() {
    let gw = Gateway::start(keyed(false).tabular_only());
    runtime().block_on(async {
        for client in [h1_client(), h2_client()] {
            for (path, content_type) in [
                ("/", "text/html; charset=utf-8"),
                ("/docs", "text/html; charset=utf-8"),
                ("/docs/", "text/html; charset=utf-8"),
                ("/ui/console.js", "text/javascript; charset=utf-8"),
                ("/ui/console.css", "text/css; charset=utf-8"),
                ("/ui/docs.js", "text/javascript; charset=utf-8"),
                ("/ui/favicon.svg", "image/svg+xml"),
            ] {
                let r = client.get(gw.url(path)).send().await.unwrap();
                assert_eq!(r.status(), 200, "{path}");
                let h = r.headers();
                assert_eq!(h["content-type"], content_type, "{path}");
                assert!(
                    h[CSP].to_str().unwrap().contains("default-src 'self'"),
                    "{path}"
                );
                assert!(
                    !h[CSP].to_str().unwrap().contains("unsafe-inline"),
                    "{path}"
                );
                assert_eq!(h["x-content-type-options"], "nosniff");
                assert_eq!(h["referrer-policy"], "no-referrer");
                assert_eq!(h["x-frame-options"], "DENY");
                assert_eq!(h["cache-control"], "no-cache");
                assert!(h.contains_key("etag"), "{path}");
            }
            // A page route's refusal carries the policy too.
            let r = client.get(gw.url("/ui/nothing.js")).send().await.unwrap();
            assert_eq!(r.status(), 404);
            assert!(r.headers().contains_key(CSP));
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found");
        }

        // Swagger UI: brotli, gzip or as released, each with its own tag; cached for
        // good (its path names its version); a held copy is not sent again.
        let bundle = "/ui/swagger-ui/5.33.1/swagger-ui-bundle.js";
        let c = h2_client();
        let mut tags = BTreeSet::new();
        for (accept, encoding, file) in [
            ("gzip, deflate, br", Some("br"), "swagger-ui-bundle.js.br"),
            ("gzip", Some("gzip"), "swagger-ui-bundle.js.gz"),
            ("identity", None, "swagger-ui-bundle.js"),
        ] {
            let r = c
                .get(gw.url(bundle))
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let h = r.headers().clone();
            assert_eq!(
                h.get("content-encoding").map(|v| v.to_str().unwrap()),
                encoding
            );
            assert_eq!(h["vary"], "accept-encoding");
            assert_eq!(h["cache-control"], "max-age=31536000, immutable");
            let etag = h["etag"].to_str().unwrap().to_owned();
            assert!(tags.insert(etag.clone()), "one tag per encoding");
            assert_eq!(r.bytes().await.unwrap(), vendored(file), "{accept}");
            let again = c
                .get(gw.url(bundle))
                .header("accept-encoding", accept)
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 304, "{accept}");
            assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
            assert!(again.bytes().await.unwrap().is_empty());
        }
        // HEAD: the headers, no body.
        let r = c.head(gw.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key(CSP));
        // A page takes no POST.
        let r = c.post(gw.url("/docs")).send().await.unwrap();
        assert_eq!(r.status(), 405);
    });
}

#[test]
fn ui_enabled_false_makes_the_pages_unknown() {
    let gw = Gateway::start(
        keyed(false)
            .tabular_only()
            .env("INFERGATE_UI__ENABLED", false),
    );
    runtime().block_on(async {
        let c = h1_client();
        for path in ["/", "/docs", "/ui/console.js", "/console/status"] {
            let r = c.get(gw.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
            assert!(!r.headers().contains_key(CSP), "{path}: answered as a page");
        }
        // The API is untouched.
        let r = c.get(gw.url("/openapi.json")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
}

#[test]
fn ui_scope_admin_needs_an_admin_key_for_the_pages() {
    let gw = Gateway::start(
        keyed(true)
            .tabular_only()
            .env("INFERGATE_UI__SCOPE", "admin"),
    );
    runtime().block_on(async {
        let stranger = bare_builder().build().unwrap();
        for path in ["/", "/docs", "/ui/console.js", "/console/status"] {
            let r = stranger.get(gw.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 401, "{path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{path}");
            let r = h1_client().get(gw.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path} with the admin key");
        }
    });
    // With ui.scope = open (the default) the pages open without a key, and the numbers
    // they poll still need one.
    let gw = Gateway::start(keyed(true).tabular_only());
    runtime().block_on(async {
        let stranger = bare_builder().build().unwrap();
        let r = stranger.get(gw.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = stranger
            .get(gw.url("/console/status"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    });
}

/// A repository beside the bundled models: `c`, versions 1 and 2 split 80/20, version 2
/// also mirrored at 50 %.
fn canary_repository(root: &Path) -> Options {
    write_version(root, "c", 1, 0.0);
    write_version(root, "c", 2, 1.0);
    std::fs::write(
        root.join("c/model.toml"),
        "[version_policy]\nall = true\n[traffic]\n\"1\" = 80\n\"2\" = 20\n\
         [shadow]\nversion = \"2\"\nshare = 0.5\n",
    )
    .unwrap();
    keyed(false).env("INFERGATE_REPOSITORY__PATH", root.display())
}

#[test]
fn console_status_shows_traffic_models_and_the_split() {
    let root = tempfile::tempdir().unwrap();
    let gw = Gateway::start(canary_repository(root.path()).tabular_only());
    runtime().block_on(async {
        let c = h2_client();
        let status = gw.get_json("/console/status").await;
        assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(status["ready"]["status"], "ready");
        assert_eq!(status["traffic"]["predictions"], 0);
        assert_eq!(status["traffic"]["latency_ms"], Value::Null);
        let models = status["models"].as_array().unwrap();
        let iris = models.iter().find(|m| m["name"] == "iris-mlp").unwrap();
        assert_eq!(iris["input"], "features");
        assert_eq!(iris["features"].as_array().unwrap().len(), 4);
        assert_eq!(iris["classes"], 3);
        assert_eq!(iris["versions"][0]["traffic_percent"], 100.0);
        let canary = models.iter().find(|m| m["name"] == "c").unwrap();
        let shares: Vec<(String, f64)> = canary["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_str().unwrap().to_owned(),
                    v["traffic_percent"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(shares, [("2".into(), 20.0), ("1".into(), 80.0)]);
        assert_eq!(canary["versions"][0]["shadow_percent"], 50.0);
        assert_eq!(canary["versions"][1]["shadow_percent"], Value::Null);

        // Ten predictions, the same row: one computed, nine from the cache.
        for _ in 0..10 {
            let r = c
                .post(gw.url("/predict"))
                .json(&json!({"features": [5.1, 3.5, 1.4, 0.2]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let traffic = gw.get_json("/console/status").await["traffic"].clone();
        assert_eq!(traffic["predictions"], 10);
        assert_eq!(traffic["served_total"], 10);
        assert_eq!(traffic["cache_hit_rate"], 0.9);
        assert!(traffic["per_s"].as_f64().unwrap() > 0.0);
        let latency = &traffic["latency_ms"];
        let (p50, p99) = (
            latency["p50"].as_f64().unwrap(),
            latency["p99"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99, "{latency}");
    });
}

/// The operations of the gateway's OpenAPI document, as `METHOD path`.
async fn documented_operations(gw: &Gateway) -> BTreeSet<String> {
    let doc = gw.get_json("/openapi.json").await;
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "head", "patch"].contains(&method.as_str()) {
                ops.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    ops
}

/// Asserts that every URL the browser asked for is the gateway's (or the page's own
/// `data:`/`blob:` URLs).
fn only_the_gateway(gw: &Gateway, urls: &[String]) {
    let origin = gw.url("/");
    assert!(!urls.is_empty(), "no request seen in the network log");
    for url in urls {
        assert!(
            url.starts_with(&origin) || url.starts_with("data:") || url.starts_with("blob:"),
            "the page asked another host: {url}"
        );
    }
}

/// Opens Swagger UI's operation `op` (its element's id) and presses "Try it out".
async fn try_it_out(b: &Browser, op: &str) {
    let block = b.wait_for(&format!("#{op}")).await;
    if block.find(Locator::Css(".try-out__btn")).await.is_err() {
        block
            .find(Locator::Css(".opblock-summary-control"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    let button = b.wait_for(&format!("#{op} .try-out__btn")).await;
    if button.text().await.unwrap().contains("Try it out") {
        button.click().await.unwrap();
    }
}

/// Presses "Execute" on operation `op`: the status and body Swagger UI then shows (once
/// the status is `want_status`, when given).
async fn execute(b: &Browser, op: &str, want_status: Option<&str>) -> (String, String) {
    b.wait_for(&format!("#{op} .execute"))
        .await
        .click()
        .await
        .unwrap();
    let live = format!("#{op} .live-responses-table tr.response");
    let status = b
        .wait_text(&format!("{live} .response-col_status"), |t| {
            want_status.map_or(!t.trim().is_empty(), |want| t.trim() == want)
        })
        .await;
    let body = b
        .wait_for(&format!("{live} .response-col_description pre"))
        .await
        .text()
        .await
        .unwrap();
    (status.trim().to_owned(), body)
}

const PREDICT_OP: &str = "operations-gateway-predict";

/// Swagger UI's "Try it out" on `POST /predict`, multipart, with the cat photo: the status
/// and body it shows.
async fn try_predict_with_the_cat(b: &Browser) -> (String, String) {
    try_it_out(b, PREDICT_OP).await;
    b.wait_for(&format!(
        "#{PREDICT_OP} .opblock-section-request-body select"
    ))
    .await
    .select_by_value("multipart/form-data")
    .await
    .unwrap();
    b.wait_for(&format!("#{PREDICT_OP} input[type=file]"))
        .await
        .send_keys(cat_photo().to_str().unwrap())
        .await
        .unwrap();
    execute(b, PREDICT_OP, None).await
}

#[test]
fn docs_in_chromium_list_every_operation_and_try_a_prediction() {
    let gw = Gateway::start(keyed(false));
    runtime().block_on(async {
        let b = Browser::start(1280, 900).await;
        b.client.goto(&gw.url("/docs")).await.unwrap();
        b.wait_for(".opblock").await;
        let first_paint = b.eval(FIRST_PAINT).await;
        std::fs::write(
            out_dir().join("docs-figures.txt"),
            format!("docs first contentful paint: {first_paint} ms\n"),
        )
        .unwrap();
        // Every operation of the document is listed, and nothing else.
        let shown = b
            .eval(
                "return [...document.querySelectorAll('.opblock')].map(o => \
                 o.querySelector('.opblock-summary-method').textContent + ' ' + \
                 o.querySelector('.opblock-summary-path').getAttribute('data-path'))",
            )
            .await;
        let shown: BTreeSet<String> = shown
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(shown, documented_operations(&gw).await);
        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "console errors on /docs: {errors:#?}");

        std::fs::write(
            out_dir().join("docs-desktop.png"),
            b.client.screenshot().await.unwrap(),
        )
        .unwrap();
        let (status, body) = try_predict_with_the_cat(&b).await;
        assert_eq!(status, "200", "{body}");
        assert!(body.contains("tiger cat"), "{body}");
        std::fs::write(
            out_dir().join("docs-try-it-out.png"),
            b.client.screenshot().await.unwrap(),
        )
        .unwrap();
        // An Open Inference Protocol call, the document's example body on iris-mlp.
        let infer = "operations-oip-oip_model_infer";
        try_it_out(&b, infer).await;
        let model = b
            .wait_for(&format!("#{infer} tr[data-param-name=model] input"))
            .await;
        model.clear().await.unwrap();
        model.send_keys("iris-mlp").await.unwrap();
        let (status, body) = execute(&b, infer, None).await;
        assert_eq!(status, "200", "{body}");
        assert!(body.contains("\"probabilities\""), "{body}");

        b.client.goto(&gw.url("/docs")).await.unwrap();
        b.wait_for(".opblock").await;
        std::fs::write(
            out_dir().join("docs-phone.png"),
            b.full_page_screenshot(390, true).await,
        )
        .unwrap();
        let errors = b.console_errors().await;
        assert!(
            errors.is_empty(),
            "console errors trying /predict: {errors:#?}"
        );
        only_the_gateway(&gw, &b.requested_urls().await);
        b.close().await;
    });
}

#[test]
fn docs_in_chromium_authorize_with_an_api_key() {
    let gw = Gateway::start(keyed(true));
    runtime().block_on(async {
        let b = Browser::start(1280, 900).await;
        b.client.goto(&gw.url("/docs")).await.unwrap();
        b.wait_for(".opblock").await;
        // No key: the gateway's 401 is what the page shows.
        let (status, body) = try_predict_with_the_cat(&b).await;
        assert_eq!(status, "401", "{body}");
        assert!(body.contains("unauthorized"), "{body}");

        // Authorize: the key as `X-API-Key`.
        b.wait_for(".auth-wrapper .authorize")
            .await
            .click()
            .await
            .unwrap();
        let input = b
            .wait_for(".modal-ux input[type=text], .modal-ux input[type=password]")
            .await;
        input.send_keys(SUITE_KEY).await.unwrap();
        b.wait_for(".modal-ux .auth-btn-wrapper .authorize")
            .await
            .click()
            .await
            .unwrap();
        b.wait_for(".modal-ux .btn-done")
            .await
            .click()
            .await
            .unwrap();
        let (status, body) = execute(&b, PREDICT_OP, Some("200")).await;
        assert_eq!(status, "200");
        assert!(body.contains("tiger cat"), "{body}");
        // The 401 is in the console, as the browser logs any refused fetch; nothing else.
        let errors: Vec<String> = b
            .console_errors()
            .await
            .into_iter()
            .filter(|e| !e.contains("status of 401"))
            .collect();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        only_the_gateway(&gw, &b.requested_urls().await);
        b.close().await;
    });
}

/// The number a console figure shows (`1,234`, `0.52`), 0 for `–`.
fn number(text: &str) -> f64 {
    text.replace(',', "").trim().parse().unwrap_or(0.0)
}

#[test]
fn console_in_chromium_shows_the_gateway_and_tries_models() {
    let root = tempfile::tempdir().unwrap();
    let gw = Gateway::start(canary_repository(root.path()));
    runtime().block_on(async {
        let b = Browser::start(1280, 900).await;
        b.client.goto(&gw.url("/")).await.unwrap();
        b.wait_text("#version", |t| t == env!("CARGO_PKG_VERSION"))
            .await;
        b.wait_text("#status", |t| t == "ready").await;
        let first_paint = b.eval(FIRST_PAINT).await;
        // The models, with the canary's split.
        let rows = b
            .wait_text("#models tbody", |t| {
                t.contains("iris-mlp") && t.contains("80 %")
            })
            .await;
        assert!(rows.contains("efficientnet-lite0"), "{rows}");
        assert!(rows.contains("2 (20 %), 1 (80 %)"), "{rows}");
        assert!(rows.contains("2 (50 %)"), "the shadow: {rows}");

        // The numbers move under a short load.
        let c = h2_client();
        for i in 0..20 {
            let r = c
                .post(gw.url("/predict"))
                .json(&json!({"features": [5.0 + f64::from(i) / 10.0, 3.5, 1.4, 0.2]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        b.wait_text("#served", |t| number(t) >= 20.0).await;
        let rate = b.wait_text("#rate", |t| number(t) > 0.0).await;
        let p50 = b.wait_text("#p50", |t| t.ends_with("ms")).await;
        assert!(number(&rate) > 0.0 && !p50.is_empty());

        // The cat photo: the bars are the JSON API's answer for the same bytes.
        b.client
            .find(Locator::Css("#model"))
            .await
            .unwrap()
            .select_by_value("efficientnet-lite0")
            .await
            .unwrap();
        b.wait_for("#file")
            .await
            .send_keys(cat_photo().to_str().unwrap())
            .await
            .unwrap();
        let preview = b.wait_for("#preview").await.attr("src").await.unwrap();
        assert!(preview.is_some_and(|s| s.starts_with("blob:")));
        // Nothing moves when the answer arrives: every layout shift from here on, user
        // input or not, is summed.
        b.eval(
            "window.shifts = []; new PerformanceObserver(list => window.shifts.push(\
             ...list.getEntries().map(e => e.value))).observe({type: 'layout-shift'}); \
             return true",
        )
        .await;
        b.wait_for("#send").await.click().await.unwrap();
        b.wait_text("#outcome", |t| t.starts_with("efficientnet-lite0"))
            .await;
        let shifted = b
            .eval("return window.shifts.reduce((sum, v) => sum + v, 0)")
            .await;
        assert_eq!(
            shifted.as_f64(),
            Some(0.0),
            "the layout shifted when results arrived"
        );
        let shown = b
            .eval(
                "return [...document.querySelectorAll('#bars li[data-label]')].map(li => \
                 [li.dataset.label, Number(li.dataset.confidence), \
                  li.querySelector('.pct').textContent])",
            )
            .await;
        let api = gw.upload_file(&c, &cat_photo()).await;
        let expected = api["predictions"].as_array().unwrap();
        let shown = shown.as_array().unwrap();
        assert_eq!(shown.len(), expected.len());
        for (s, e) in shown.iter().zip(expected) {
            assert_eq!(s[0], e["label"]);
            assert_eq!(s[1].as_f64(), e["confidence"].as_f64());
            let pct = format!("{:.1} %", e["confidence"].as_f64().unwrap() * 100.0);
            assert_eq!(s[2].as_str(), Some(pct.as_str()));
        }
        assert!(
            shown[0][0].as_str().unwrap().contains("cat"),
            "the first bar: {}",
            shown[0][0]
        );
        let cache = b.wait_text("#x-cache", |t| t != "–").await;
        assert!(["miss", "hit-l1"].contains(&cache.as_str()), "{cache}");
        b.wait_text("#request-id", |t| t.len() >= 16).await;
        b.wait_text("#server-time", |t| t.ends_with("ms")).await;
        std::fs::write(
            out_dir().join("console-desktop.png"),
            b.full_page_screenshot(1280, false).await,
        )
        .unwrap();
        std::fs::write(
            out_dir().join("console-phone.png"),
            b.full_page_screenshot(390, true).await,
        )
        .unwrap();

        // An Iris row, typed: setosa.
        b.client
            .find(Locator::Css("#model"))
            .await
            .unwrap()
            .select_by_value("iris-mlp")
            .await
            .unwrap();
        for (i, v) in ["5.1", "3.5", "1.4", "0.2"].iter().enumerate() {
            let field = b.wait_for(&format!("#feature-{i}")).await;
            let label = b
                .eval(&format!(
                    "return document.querySelector('label[for=feature-{i}]').textContent"
                ))
                .await;
            assert!(
                label.as_str().is_some_and(|l| !l.is_empty()),
                "feature {i} unlabelled"
            );
            field.send_keys(v).await.unwrap();
        }
        b.wait_for("#send").await.click().await.unwrap();
        b.wait_text("#outcome", |t| t.contains("setosa")).await;
        let first = b.wait_for("#bars li[data-label]").await;
        assert_eq!(
            first.attr("data-label").await.unwrap().as_deref(),
            Some("setosa")
        );

        // Every control has a label (or text of its own), and nothing is wider than a
        // phone's screen or a 1280-pixel window at 200 % zoom (640 CSS pixels).
        let unlabelled = b
            .eval(
                "return [...document.querySelectorAll('input, select, button')].filter(e => \
                 !(e.labels && e.labels.length) && !e.textContent.trim()).map(e => e.id)",
            )
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a label");
        for width in [390, 640] {
            b.devtools(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": 800, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let overflow = b
                .eval("return document.documentElement.scrollWidth - window.innerWidth")
                .await;
            assert!(
                overflow.as_i64() <= Some(0),
                "{overflow} px too wide at {width}"
            );
        }
        b.devtools("Emulation.clearDeviceMetricsOverride", json!({}))
            .await;

        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "console errors on /: {errors:#?}");
        let urls = b.requested_urls().await;
        only_the_gateway(&gw, &urls);

        // The page's weight: everything it loads (the API's answers aside), as sent
        // without compression.
        let origin = gw.url("");
        let mut files: BTreeSet<String> = urls
            .iter()
            .filter_map(|u| u.strip_prefix(&origin))
            .filter(|p| *p == "/" || p.starts_with("/ui/"))
            .map(str::to_owned)
            .collect();
        files.insert("/".to_owned());
        let plain = bare_builder().build().unwrap();
        let mut weight = 0;
        for path in &files {
            let r = plain.get(gw.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            weight += r.bytes().await.unwrap().len();
        }
        assert!(
            weight <= 50_000,
            "the console weighs {weight} bytes: {files:?}"
        );
        std::fs::write(
            out_dir().join("console-figures.txt"),
            format!(
                "console weight: {weight} bytes uncompressed ({files:?})\n\
                 console first contentful paint: {first_paint} ms\n"
            ),
        )
        .unwrap();
        b.close().await;
    });
}

#[test]
fn console_in_chromium_asks_for_a_key_only_when_refused() {
    let gw = Gateway::start(keyed(true).tabular_only());
    runtime().block_on(async {
        let b = Browser::start(1024, 768).await;
        b.client.goto(&gw.url("/")).await.unwrap();
        // The numbers need an admin key: the dialog asks for one.
        let dialog = b.wait_for("#key-dialog[open]").await;
        let why = dialog.text().await.unwrap();
        assert!(why.contains("API key"), "{why}");
        b.wait_for("#key").await.send_keys(SUITE_KEY).await.unwrap();
        b.wait_for("#key-use").await.click().await.unwrap();
        b.wait_text("#version", |t| t == env!("CARGO_PKG_VERSION"))
            .await;
        // Kept for this tab in sessionStorage, never in a cookie or the URL.
        let kept = b
            .eval(
                "return [sessionStorage.getItem('infergate.key'), document.cookie, location.href]",
            )
            .await;
        assert_eq!(kept[0], SUITE_KEY);
        assert_eq!(kept[1], "");
        assert!(!kept[2].as_str().unwrap().contains(SUITE_KEY));
        b.close().await;
    });
}
