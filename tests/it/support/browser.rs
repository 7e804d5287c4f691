//! A real browser for the pages' tests: Debian's `chromium`, headless, driven over
//! WebDriver by its `chromedriver` (package `chromium-driver`; scripts/test.sh installs
//! both) through fantoccini. The browser keeps its console and network logs
//! (`goog:loggingPrefs`), read through chromedriver's own endpoints ([`Browser::log`]), and
//! takes DevTools commands the same way ([`Browser::devtools`]).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::free_port;

/// Where a page may wait for what it shows.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A browser session, and the chromedriver behind it (killed on drop).
pub struct Browser {
    pub client: Client,
    driver: Child,
}

/// A chromedriver command of its own (not in the W3C protocol): a POST to
/// `/session/{id}/{path}`.
#[derive(Debug)]
struct Chromium {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Chromium {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless chromium session `width` ×
    /// `height` CSS pixels, which accepts the gateway's self-signed certificate.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port().port();
        let driver = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (Debian: apt-get install chromium chromium-driver)");
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-default-apps",
                    "--metrics-recording-only",
                    format!("--window-size={width},{height}"),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}/"))
            .await
            .expect("a chromium session");
        Browser { client, driver }
    }

    /// The entries of a log since the last read: `browser` (the console, CSP violations
    /// included) or `performance` (DevTools events, the network's among them).
    pub async fn log(&self, kind: &str) -> Vec<Value> {
        let got = self
            .client
            .issue_cmd(Chromium {
                path: "se/log",
                body: json!({ "type": kind }),
            })
            .await
            .expect("read the browser's log");
        got.as_array().cloned().unwrap_or_default()
    }

    /// The console's errors since the last read (and warnings that name a Content
    /// Security Policy).
    pub async fn console_errors(&self) -> Vec<String> {
        self.log("browser")
            .await
            .into_iter()
            .filter(|e| {
                e["level"] == "SEVERE"
                    || e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("Content Security Policy"))
            })
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every URL the browser asked for since the last read of the performance log.
    pub async fn requested_urls(&self) -> Vec<String> {
        self.log("performance")
            .await
            .into_iter()
            .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
            .filter(|m| m["message"]["method"] == "Network.requestWillBeSent")
            .filter_map(|m| {
                Some(
                    m["message"]["params"]["request"]["url"]
                        .as_str()?
                        .to_owned(),
                )
            })
            .collect()
    }

    /// Runs a DevTools command (`Emulation.setDeviceMetricsOverride`, ...).
    pub async fn devtools(&self, cmd: &str, params: Value) -> Value {
        self.client
            .issue_cmd(Chromium {
                path: "goog/cdp/execute",
                body: json!({ "cmd": cmd, "params": params }),
            })
            .await
            .unwrap_or_else(|e| panic!("DevTools {cmd}: {e}"))
    }

    /// A screenshot of the whole page (not only the window) as a screen `width` CSS
    /// pixels wide shows it: a phone's (touch, 2× pixels) when `phone`. The window is as
    /// it was afterwards.
    pub async fn full_page_screenshot(&self, width: u32, phone: bool) -> Vec<u8> {
        let scale = if phone { 2 } else { 1 };
        let metrics = |height: u64| json!({ "width": width, "height": height, "deviceScaleFactor": scale, "mobile": phone });
        self.devtools("Emulation.setDeviceMetricsOverride", metrics(800))
            .await;
        // The page laid out at that width, then as tall as it is.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let height = self
            .eval("return document.documentElement.scrollHeight")
            .await
            .as_u64()
            .unwrap_or(800);
        self.devtools("Emulation.setDeviceMetricsOverride", metrics(height))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        self.devtools("Emulation.clearDeviceMetricsOverride", json!({}))
            .await;
        png
    }

    /// Waits for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {PATIENCE:?}: {e}"))
    }

    /// Waits until the text of the element matching `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if ok(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed what was awaited; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Ends the session.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// chromedriver: `TEST_CHROMEDRIVER`, else Debian's.
fn chromedriver() -> String {
    std::env::var("TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned())
}
