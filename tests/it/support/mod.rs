//! Test support: start the real `infergate` binary on a free port and talk to it.
#![allow(dead_code, unreachable_pub)]
// Waiting on a real child process is wall-clock time, not the paused tokio clock.
#![allow(clippy::disallowed_types)]

pub mod in_process;
pub mod launcher;
pub mod listening;
pub mod netns;
pub mod browser;
pub mod photos;
pub mod postgres_server;
pub mod redis_server;
pub mod unix;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How a test gateway is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub tls: bool,
    pub io_threads: usize,
    /// `--listen`; port 0 picks a free port.
    pub listen: String,
    /// Serve a check socket (`check.sock` in the gateway's temp dir).
    pub check_socket: bool,
    /// Start with `--standby` (needs `check_socket` to tell when it is ready).
    pub standby: bool,
    /// Extra `INFERGATE_*` (or other) environment variables.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments, after the defaults.
    pub args: Vec<String>,
    /// Wait for `/ready` (200) before returning from `start`; otherwise only for the
    /// listener.
    pub wait_ready: bool,
    /// Give the gateway a key file holding [`SUITE_KEY`] (as `admin`, named `suite`);
    /// default: [`keys_on`].
    pub suite_key: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: true,
            io_threads: 2,
            listen: "127.0.0.1:0".to_owned(),
            check_socket: false,
            standby: false,
            env: Vec::new(),
            args: Vec::new(),
            wait_ready: true,
            suite_key: keys_on(),
        }
    }
}

impl Options {
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn arg(mut self, arg: impl ToString) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn plaintext(mut self) -> Self {
        self.tls = false;
        self
    }

    pub fn check_socket(mut self) -> Self {
        self.check_socket = true;
        self
    }

    pub fn standby(mut self) -> Self {
        self.standby = true;
        self.check_socket = true;
        self
    }

    /// Return once it listens, ready or not.
    pub fn unready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// With API keys on: a key file holding [`SUITE_KEY`], which every client made here
    /// presents.
    pub fn with_suite_key(mut self) -> Self {
        self.suite_key = true;
        self
    }

    /// Without the bundled image model: a faster start, for tests that need no images.
    pub fn tabular_only(self) -> Self {
        self.env("INFERGATE_IMAGE__BUNDLED", false)
    }

    /// The prediction log into the PostgreSQL at `database_url`, spooling in `spool`,
    /// flushed every 50 ms so a test sees its rows soon.
    pub fn logging_to(self, database_url: &str, spool: &std::path::Path) -> Self {
        self.env("INFERGATE_DATABASE__URL", database_url)
            .env("INFERGATE_PREDICTION_LOG__SPOOL_DIR", spool.display())
            .env("INFERGATE_PREDICTION_LOG__FLUSH_INTERVAL_MS", 50)
    }
}

/// A running gateway process; killed on drop if still running.
pub struct Gateway {
    pub child: Child,
    /// Where it listens (in standby: where it will).
    pub addr: SocketAddr,
    pub tls: bool,
    /// Its check socket, when it serves one.
    pub check_socket: Option<PathBuf>,
    pub logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// The gateway binary under test: this build's, or TEST_GATEWAY_BIN's (scripts/gpu-check.sh
/// runs test binaries built on another machine, whose paths are not this one's).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("TEST_GATEWAY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_infergate").to_owned())
    })
}

/// The repository's root directory: this build's, or TEST_REPO_DIR's (as `bin`).
pub fn repo() -> PathBuf {
    std::env::var_os("TEST_REPO_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The Python virtual environment of `scripts/requirements/<name>.txt`, `target/py<name>`,
/// set up by `scripts/lib/venv.sh` (a fast no-op once it is).
pub fn venv(name: &str) -> PathBuf {
    let status = Command::new(repo().join("scripts/lib/venv.sh"))
        .arg(repo().join(format!("scripts/requirements/{name}.txt")))
        .status()
        .expect("run scripts/lib/venv.sh");
    assert!(status.success(), "scripts/lib/venv.sh {name}.txt failed");
    repo().join(format!("target/py{name}"))
}

/// One inference request sent by NVIDIA's tritonclient over HTTP and over gRPC
/// (scripts/test/oip-infer.py, in the target/pyclients venv): `request` as that script
/// reads it, the answer as it prints it (`{"http": …, "grpc": …}`).
pub fn tritonclient_infer(gw: &Gateway, request: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new(venv("clients").join("bin/python"))
        .arg(repo().join("scripts/test/oip-infer.py"))
        .arg(gw.addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run scripts/test/oip-infer.py");
    serde_json::to_writer(child.stdin.take().expect("its stdin"), request).expect("write");
    let out = child.wait_with_output().expect("oip-infer.py's output");
    assert!(
        out.status.success(),
        "oip-infer.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oip-infer.py prints JSON")
}

/// The I/O backend this run of the suite serves on (`TEST_IO_BACKEND`: `uring` or
/// `epoll`); `None` leaves the gateway's default (`auto`).
pub fn io_backend_under_test() -> Option<String> {
    std::env::var("TEST_IO_BACKEND")
        .ok()
        .filter(|v| !v.is_empty())
}

/// The key every client made here presents (an open gateway ignores it): an `admin` key,
/// named `suite`, in the key file of a gateway started [`Options::with_suite_key`] or while
/// [`keys_on`].
pub const SUITE_KEY: &str = "ig_suite0000000000000000000000000000000000000000000000000000000000";

/// Whether this run of the suite has API keys on (`TEST_API_KEYS=1`, set by
/// `scripts/test.sh` for a second run of the HTTP API and bad-input suites): every gateway
/// gets a key file holding [`SUITE_KEY`], and raw requests carry it too.
pub fn keys_on() -> bool {
    std::env::var("TEST_API_KEYS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Which io_uring syscalls [`deny_io_uring`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    /// `io_uring_setup`, `io_uring_enter` and `io_uring_register`, as Docker >= 25's
    /// default seccomp profile does.
    All,
    /// Only `io_uring_enter` and `io_uring_register`: a ring that can be made but never
    /// entered.
    EnterOnly,
}

/// Makes `command`'s child run under a seccomp filter that answers the io_uring syscalls
/// (`refuse` says which) with EPERM and allows everything else; the filter survives the
/// exec, so the gateway itself runs under it.
#[allow(unsafe_code)]
pub fn deny_io_uring(command: &mut Command, refuse: Refuse) {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    use std::os::unix::process::CommandExt as _;
    // io_uring_setup, io_uring_enter, io_uring_register: one number on every architecture
    // (the generic table, and x86_64's own).
    const SETUP: i64 = 425;
    const ENTER_REGISTER: [i64; 2] = [426, 427];
    const EPERM: u32 = 1;
    let setup = (refuse == Refuse::All).then_some(SETUP);
    let rules = ENTER_REGISTER
        .into_iter()
        .chain(setup)
        .map(|nr| (nr, Vec::new()))
        .collect();
    let arch = TargetArch::try_from(std::env::consts::ARCH).expect("a seccomp architecture");
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(EPERM),
        arch,
    )
    .expect("the seccomp filter");
    // Compiled here, in the parent: the child between fork and exec may not allocate.
    let program = BpfProgram::try_from(filter).expect("the seccomp program");
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are sound. `apply_filter` makes two syscalls (prctl
    // PR_SET_NO_NEW_PRIVS, then seccomp) on the program compiled above, and allocates
    // nothing on either path (its errors carry the raw OS error, passed on as it is);
    // it touches no lock.
    unsafe {
        command.pre_exec(move || match seccompiler::apply_filter(&program) {
            Ok(()) => Ok(()),
            Err(seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e)) => Err(e),
            Err(_) => Err(std::io::ErrorKind::InvalidInput.into()),
        });
    }
}

/// Raises this process's open-file limit to its hard limit (gateways started after this
/// inherit it), for tests that hold a thousand connections.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

/// Polls `done` every 50 ms until it holds; fails the test, naming `what`, after
/// `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port free right now (bound and released), never one this test process has
/// handed out before: the kernel may give a just-released port to the next `bind(0)`, and
/// two tests running side by side on one port (every gateway sets `SO_REUSEPORT`) would
/// each see the other's listener.
pub fn free_port() -> SocketAddr {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

impl Gateway {
    /// Starts the binary with an empty config dir, waits for it to listen (or stand by)
    /// and be ready.
    pub fn start(opts: Options) -> Gateway {
        Self::start_with(Command::new(bin()), opts)
    }

    /// Like [`Gateway::start`], with the binary run by `cmd` (its program and leading
    /// arguments, e.g. a launcher shell; the binary's own arguments are appended).
    pub fn start_with(mut cmd: Command, opts: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let check_socket = opts.check_socket.then(|| dir.path().join("check.sock"));
        cmd.arg("--config-dir")
            .arg(dir.path())
            .args(["--listen", &opts.listen, "--log-format", "json"])
            .args(["--io-threads", &opts.io_threads.to_string()])
            .args(&opts.args)
            .env_remove("RUST_LOG")
            .env("INFERGATE_SECRETS__DIR", dir.path().join("no-secrets"))
            .env("INFERGATE_TLS__ENABLED", opts.tls.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if opts.standby {
            cmd.arg("--standby");
        }
        // The whole suite runs once per I/O backend (scripts/test.sh); a test's own
        // `--io` flag or INFERGATE_SERVER__IO still wins.
        if let Some(io) = io_backend_under_test() {
            cmd.env("INFERGATE_SERVER__IO", io);
        }
        if let Some(path) = &check_socket {
            cmd.env("INFERGATE_SERVER__CHECK_SOCKET", path);
        }
        if opts.suite_key {
            let path = dir.path().join("api_keys");
            let line = infergate::auth::keys::line(
                "suite",
                infergate::auth::Scopes::of(&[infergate::auth::Scope::Admin]),
                SUITE_KEY,
            );
            std::fs::write(&path, line + "\n").expect("write the suite's key file");
            cmd.env("INFERGATE_AUTH__KEYS_PATH", path);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn infergate");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(addr);
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gateway did not listen; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let gw = Gateway {
            child,
            addr,
            tls: opts.tls,
            check_socket,
            logs,
            _dir: dir,
        };
        if opts.standby {
            gw.wait_ready_on_check_socket();
        } else if opts.wait_ready {
            gw.wait_ready();
        }
        gw
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    fn wait_ready(&self) {
        let client = h1_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        let rt = runtime();
        loop {
            let ok = rt.block_on(async {
                client
                    .get(self.url("/ready"))
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway never became ready; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready_on_check_socket(&self) {
        let path = self.check_socket.as_ref().expect("a check socket");
        let deadline = Instant::now() + Duration::from_secs(30);
        let rt = runtime();
        loop {
            let ok = rt.block_on(async {
                unix::request(path, "GET", "/ready", None)
                    .await
                    .is_ok_and(|r| r.status == 200)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway never became ready on its check socket; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The value of the first `/metrics` line starting with `needle` (0 when absent).
    pub async fn metric(&self, needle: &str) -> f64 {
        let text = h1_client()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        metric_in(&text, needle).unwrap_or(0.0)
    }

    /// The gateway's resident memory, KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// How many file descriptors the gateway has open (`/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("read /proc/<pid>/fd")
            .count()
    }

    /// GET `path` over HTTP/1.1 and its JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        h1_client()
            .get(self.url(path))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("a JSON body")
    }

    /// POSTs `body` as JSON to `path` with `client`; the answer's JSON.
    pub async fn post_json(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        let r = client.post(self.url(path)).json(body).send().await;
        r.expect("POST").json().await.expect("a JSON body")
    }

    /// Uploads the file at `file` to `/predict` (multipart field `file`) with `client`; the
    /// answer's JSON.
    pub async fn upload_file(
        &self,
        client: &reqwest::Client,
        file: &std::path::Path,
    ) -> serde_json::Value {
        let bytes = std::fs::read(file).expect("read the file to upload");
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.unwrap_or_default());
        let form = reqwest::multipart::Form::new().part("file", part);
        let r = client
            .post(self.url("/predict"))
            .multipart(form)
            .send()
            .await;
        r.expect("POST").json().await.expect("a JSON body")
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the process exits with code 0 within `timeout` (logs on failure).
    pub fn expect_clean_exit(&mut self, timeout: Duration) {
        let status = self.wait_exit(timeout).expect("exits");
        assert_eq!(status.code(), Some(0), "logs:\n{}", self.logs());
    }

    /// SIGTERM, then [`Gateway::expect_clean_exit`].
    pub fn stop_cleanly(&mut self, timeout: Duration) {
        self.signal("TERM");
        self.expect_clean_exit(timeout);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a `listening` line, or of the `standby` line (where it will listen).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let message = v.get("message")?.as_str()?;
    if message != "listening" && !message.starts_with("standby:") {
        return None;
    }
    v.get("addr")?.as_str()?.parse().ok()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A client builder that accepts the gateway's certificate and presents [`SUITE_KEY`].
fn builder() -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {SUITE_KEY}");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&value).expect("a header value"),
    );
    bare_builder().default_headers(headers)
}

/// A client builder that accepts the gateway's certificate and presents no key.
pub fn bare_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .no_proxy()
}

/// A client speaking HTTP/1.1 only.
pub fn h1_client() -> reqwest::Client {
    builder().http1_only().build().expect("client")
}

/// A client speaking HTTP/2 only (ALPN h2 over TLS, prior knowledge on plaintext).
pub fn h2_client() -> reqwest::Client {
    builder().http2_prior_knowledge().build().expect("client")
}

/// A unary gRPC call's request body: one uncompressed frame.
pub fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bytes);
    frame
}

/// The value of the first series in Prometheus `text` whose line starts with `needle`.
pub fn metric_in(text: &str, needle: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A valid Iris feature vector (the first setosa row).
pub const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];

/// Raw TLS (HTTP/1.1 by ALPN) to the gateway, for requests reqwest cannot send.
pub mod raw {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    /// Accepts any certificate: the tests talk to their own self-signed gateway.
    #[derive(Debug)]
    struct AnyCert;

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// `request` with the suite's key added after each `host: x` header while
    /// [`keys_on`](super::keys_on) (every raw request here carries one); as it is otherwise.
    pub fn with_suite_key(request: &[u8]) -> Vec<u8> {
        const HOST: &[u8] = b"\r\nhost: x\r\n";
        if !super::keys_on() {
            return request.to_vec();
        }
        let with = format!(
            "\r\nhost: x\r\nauthorization: Bearer {}\r\n",
            super::SUITE_KEY
        );
        let mut out = Vec::with_capacity(request.len() + 128);
        let mut rest = request;
        while let Some(at) = rest.windows(HOST.len()).position(|w| w == HOST) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(with.as_bytes());
            rest = &rest[at + HOST.len()..];
        }
        out.extend_from_slice(rest);
        out
    }

    pub async fn connect(addr: SocketAddr) -> TlsStream<TcpStream> {
        try_connect(addr).await.unwrap()
    }

    /// A TLS connection (HTTP/1.1 by ALPN), or why there is none (e.g. refused at the
    /// connection cap: closed before the handshake).
    pub async fn try_connect(addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        try_connect_alpn(addr, b"http/1.1").await
    }

    /// A TLS connection that speaks HTTP/2 (by ALPN), for frames reqwest cannot send.
    pub async fn connect_h2(addr: SocketAddr) -> TlsStream<TcpStream> {
        try_connect_alpn(addr, b"h2").await.unwrap()
    }

    async fn try_connect_alpn(
        addr: SocketAddr,
        alpn: &[u8],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// Sends `request` bytes and reads until the server closes or `wait` passes.
    /// Returns (status, body) of the first response, or None if nothing came back.
    pub async fn exchange(
        addr: SocketAddr,
        request: &[u8],
        wait: Duration,
    ) -> Option<(u16, String)> {
        let mut tls = connect(addr).await;
        tls.write_all(&with_suite_key(request)).await.unwrap();
        parse_response(&read_response(&mut tls, wait).await)
    }

    /// Reads one response from `stream`: until it is whole, the server closes, or `wait`
    /// passes; returns what came.
    pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
        stream: &mut S,
        wait: Duration,
    ) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(wait, async {
            let mut chunk = [0u8; 4096];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        if response_complete(&buf) {
                            break;
                        }
                    }
                }
            }
        })
        .await;
        buf
    }

    /// Whether `buf` holds a whole response (head and `Content-Length` body).
    pub fn response_complete(buf: &[u8]) -> bool {
        let text = String::from_utf8_lossy(buf);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        body.len() >= content_length(head)
    }

    /// A response head's `Content-Length` (0 when it has none).
    fn content_length(head: &str) -> usize {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0)
    }

    /// The statuses of the HTTP/1.1 responses back to back in `bytes` (each head, then its
    /// `Content-Length` body), as far as they are whole.
    pub fn response_statuses(mut bytes: &[u8]) -> Vec<u16> {
        let mut statuses = Vec::new();
        while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]);
            let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
                break;
            };
            statuses.push(status);
            bytes = bytes
                .get(end + 4 + content_length(&head)..)
                .unwrap_or_default();
        }
        statuses
    }

    fn parse_response(buf: &[u8]) -> Option<(u16, String)> {
        let text = String::from_utf8_lossy(buf);
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }
}
