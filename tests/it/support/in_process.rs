//! In-process gateways, for tests where the socket is not the point: the real gateway
//! (`app::assemble_with_metrics`, warmed up as the binary warms it) behind the real
//! connection code (`server::conn::serve`: the protocol sniff, hyper's HTTP/1.1 and HTTP/2
//! servers, the router and handlers), reached over an in-memory `tokio::io::duplex` by
//! hyper's own client. No process, no port, no TLS.
//!
//! Each gateway serves its connections on a thread of its own (as the binary's I/O
//! threads do) and records its metrics to a recorder of its own
//! (`infergate::metrics::with_local_recorder`), so any number of them live in the test
//! binary at once and each `/metrics` counts only its own requests. What the gateway's
//! background threads record by name (the batcher's batch sizes, the compute threads'
//! inference times) goes to no recorder here; what the request path records does.
//!
//! ```ignore
//! let gw = InProcess::start("[cache]\nenabled = true\n");
//! let mut client = gw.connect(Protocol::Http2).await;
//! let answer = client.get("/health").await;
//! assert_eq!(answer.status, 200);
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use infergate::app::{Assembled, assemble_with_metrics, conn_settings, warm_up};
use infergate::config::{self, Config, LoadOptions};
use infergate::server::backend::Backend;
use infergate::server::conn::{self, ConnSettings, Peer};
use infergate::server::peer_cap::PeerCap;
use infergate::state::Gateway;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// What every in-process gateway starts from, under the test's own settings: light (the
/// tabular model only, one compute thread) and independent of the machine (no secrets
/// directory, so no API keys: every route is open).
const BASE: &str = r#"
[compute]
threads = 1

[image]
bundled = false
"#;

/// The in-memory pipe's capacity, each way: more than any answer here, so the server's
/// writes never wait for the reader.
const PIPE_BYTES: usize = 1 << 20;

/// The address every in-process client has, as the rate limits and the log see it.
const PEER: &str = "127.0.0.1:40000";

/// The `Host` (HTTP/1.1) or authority (HTTP/2) the clients name.
const AUTHORITY: &str = "gateway.test";

/// How long a gateway may take to load and warm up its models.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The HTTP version a client speaks; HTTP/2 is prior knowledge (h2c), as over plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// Both, for tests that run over each.
    pub const BOTH: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

    /// The version hyper reports for an answer over it.
    pub fn version(self) -> Version {
        match self {
            Protocol::Http1 => Version::HTTP_11,
            Protocol::Http2 => Version::HTTP_2,
        }
    }
}

/// A gateway in this process, ready (models warm, "listening"). Dropping it stops its
/// thread; connections still open end there.
pub struct InProcess {
    gateway: Arc<Gateway>,
    /// The server halves of new connections, to the gateway's thread.
    connections: Option<mpsc::UnboundedSender<DuplexStream>>,
    thread: Option<JoinHandle<()>>,
    /// Holds the configuration files (and is the empty secrets directory).
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// A gateway built from the built-in defaults, [`BASE`], then `toml` (keys as in
    /// `config/default.toml`), ready to serve. Panics if it cannot start.
    pub fn start(toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = load(dir.path(), toml);
        let (started_tx, started) = std_mpsc::channel();
        let (connections, incoming) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("in-process-gateway".into())
            .spawn(move || run(&config, &started_tx, incoming))
            .expect("spawn the gateway's thread");
        let gateway = match started.recv_timeout(START_TIMEOUT) {
            Ok(Ok(gateway)) => gateway,
            Ok(Err(e)) => panic!("the in-process gateway did not start: {e}"),
            Err(e) => panic!("the in-process gateway did not start: {e}"),
        };
        Self {
            gateway,
            connections: Some(connections),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The gateway's state, for what a test checks beside the answers.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// A new connection speaking `protocol`, handshaken.
    pub async fn connect(&self, protocol: Protocol) -> Client {
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        self.connections
            .as_ref()
            .expect("running")
            .send(server)
            .expect("the in-process gateway's thread is running");
        let io = TokioIo::new(client);
        let sender = match protocol {
            Protocol::Http1 => {
                let (sender, connection) = http1::handshake(io).await.expect("h1 handshake");
                tokio::spawn(connection);
                Sender::Http1(sender)
            }
            Protocol::Http2 => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("h2 handshake");
                tokio::spawn(connection);
                Sender::Http2(sender)
            }
        };
        Client { protocol, sender }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // The thread's accept loop ends with its channel.
        self.connections.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The configuration: built-in defaults, `BASE` (as `default.toml` in `dir`), `toml`.
fn load(dir: &Path, toml: &str) -> Config {
    let base = format!("{BASE}\n[secrets]\ndir = {:?}\n", dir.display().to_string());
    std::fs::write(dir.join("default.toml"), base).expect("write default.toml");
    let file = dir.join("test.toml");
    std::fs::write(&file, toml).expect("write test.toml");
    match config::load(&LoadOptions {
        config_dir: dir.to_path_buf(),
        config_file: Some(file),
        ..LoadOptions::default()
    }) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("the test's configuration is invalid: {e}\n{toml}"),
    }
}

/// The gateway's thread: assembles it under a recorder of its own, warms it up, reports
/// it started, then serves every connection sent until the sender is dropped.
fn run(
    config: &Config,
    started: &std_mpsc::Sender<Result<Arc<Gateway>, String>>,
    incoming: mpsc::UnboundedReceiver<DuplexStream>,
) {
    let served = infergate::metrics::with_local_recorder(Backend::Epoll.name(), |metrics| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let Assembled { gateway, .. } =
            assemble_with_metrics(config, Backend::Epoll, metrics).map_err(|e| chain(&e))?;
        runtime.block_on(warm_up(&gateway)).map_err(|e| chain(&e))?;
        gateway.lifecycle.flags.mark_models_warm();
        gateway.lifecycle.flags.set_listening(true);
        let peer_cap = PeerCap::new(config.http.max_connections_per_ip);
        let settings = Arc::new(conn_settings(config, &gateway, None, &peer_cap));
        let _ = started.send(Ok(gateway));
        // Connections are served on this thread (`serve` spawns HTTP/2 streams locally).
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, accept(incoming, settings));
        Ok(())
    });
    let error = match served {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(e) => chain(&e),
    };
    let _ = started.send(Err(error));
}

async fn accept(mut incoming: mpsc::UnboundedReceiver<DuplexStream>, settings: Arc<ConnSettings>) {
    let peer = Peer::Tcp(PEER.parse::<SocketAddr>().expect("peer address"));
    while let Some(stream) = incoming.recv().await {
        tokio::task::spawn_local(conn::serve(stream, peer, Arc::clone(&settings)));
    }
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// One client connection to an in-process gateway.
pub struct Client {
    protocol: Protocol,
    sender: Sender,
}

impl Client {
    /// The protocol it speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// A request for `path` (with its query), addressed as this protocol wants it: an
    /// origin-form target and `Host` over HTTP/1.1, an absolute URI over HTTP/2.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        match self.protocol {
            Protocol::Http1 => Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, AUTHORITY),
            Protocol::Http2 => Request::builder()
                .method(method)
                .uri(format!("http://{AUTHORITY}{path}")),
        }
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Answer {
        let request = self.request(Method::GET, path).body(Full::default());
        self.send(request.expect("request")).await
    }

    /// `POST path` with a JSON body (sent as is: it may be malformed on purpose).
    pub async fn post_json(&mut self, path: &str, body: &str) -> Answer {
        let request = self
            .request(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())));
        self.send(request.expect("request")).await
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Answer {
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await.expect("h1 connection ready");
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                sender.ready().await.expect("h2 connection ready");
                sender.send_request(request).await
            }
        }
        .expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the answer's body").to_bytes();
        Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// Header `name` as text; `None` when absent (or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; panics, showing the body, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answer is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
