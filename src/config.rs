//! The one `Config` tree and how it is layered.
//!
//! Later layers win: built-in defaults < `<config-dir>/default.toml` <
//! `<config-dir>/<profile>.toml` < `--config FILE` < `INFERGATE_*` environment variables
//! (`__` nests) < Docker secret files < command-line flags. Every error names its source
//! (file and key, the literal environment variable, the secret file, or the flag), and all
//! of them are reported at once.

pub mod admission;
pub mod auth;
pub mod http_limits;
pub mod image;
mod layers;
pub mod otlp;
pub mod repository;
pub mod rate_limit;
pub mod redirect;
mod render;
pub mod secrets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::config::admission::AdmissionConfig;
pub use crate::config::auth::AuthConfig;
pub use crate::config::http_limits::HttpConfig;
pub use crate::config::image::{ImageConfig, ImageModelConfig};
pub use crate::config::layers::FlagOverrides;
pub use crate::config::otlp::OtlpConfig;
pub use crate::config::rate_limit::RateLimitConfig;
pub use crate::config::redirect::RedirectConfig;
pub use crate::config::render::render_toml;
pub use crate::config::repository::{RepositoryConfig, ShadowConfig};
pub use crate::config::secrets::Secret;

/// The whole configuration. Every section has defaults; an empty file is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listening, connection limits and timeouts.
    pub server: ServerConfig,
    /// TLS termination.
    pub tls: TlsConfig,
    /// The plain-HTTP listener that redirects to HTTPS.
    pub redirect: RedirectConfig,
    /// Request head and HTTP/2 connection limits.
    pub http: HttpConfig,
    /// API keys.
    pub auth: AuthConfig,
    /// Rate limits per key and per client address.
    pub rate_limit: RateLimitConfig,
    /// Request deadlines and the adaptive concurrency limit per model.
    pub admission: AdmissionConfig,
    /// The compute threads that run models.
    pub compute: ComputeConfig,
    /// Which model to serve.
    pub model: ModelConfig,
    /// Image classification: models, upload limits, decode threads.
    pub image: ImageConfig,
    /// The model repository: models and versions from a directory, reloaded on change.
    pub repository: RepositoryConfig,
    /// Mirroring requests to a shadow version.
    pub shadow: ShadowConfig,
    /// The answer cache.
    pub cache: CacheConfig,
    /// Redis, the shared second cache tier.
    pub redis: RedisConfig,
    /// Dynamic batching of distinct requests.
    pub batch: BatchConfig,
    /// Sharing one inference among identical concurrent requests.
    pub coalesce: CoalesceConfig,
    /// PostgreSQL, where the prediction log goes.
    pub database: DatabaseConfig,
    /// Writing every prediction to the database.
    pub prediction_log: PredictionLogConfig,
    /// What `/ready` requires.
    pub ready: ReadyConfig,
    /// Logging.
    pub log: LogConfig,
    /// Request spans exported to an OpenTelemetry collector.
    pub otlp: OtlpConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Where Docker secrets are read from.
    pub secrets: SecretsConfig,
}

/// Which I/O backend serves connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring where the kernel and the sandbox allow it (probed once at start), else
    /// epoll with one WARN saying why.
    Auto,
    /// io_uring (tokio-uring): one ring and runtime per I/O thread; refusing to start
    /// (exit 2) where io_uring is refused.
    Uring,
    /// Plain tokio (epoll): one current-thread runtime per I/O thread.
    Epoll,
}

/// Listening, connection limits and timeouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// I/O threads, each with its own SO_REUSEPORT listener; 0 = one per available core.
    pub io_threads: usize,
    /// I/O backend: `auto` (io_uring, else epoll), `uring` or `epoll`.
    pub io: IoBackend,
    /// Open connections allowed across all I/O threads; more are closed at accept.
    pub max_connections: usize,
    /// Listen backlog per socket.
    pub backlog: u32,
    /// Milliseconds a client has to finish the TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// Milliseconds a client has to send a request's headers.
    pub header_read_timeout_ms: u64,
    /// Milliseconds an idle keep-alive connection stays open.
    pub keepalive_idle_timeout_ms: u64,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Milliseconds a body may take to arrive (408), and the deadline of a request that
    /// names none (504; capped by `admission.max_deadline_ms`).
    pub request_timeout_ms: u64,
    /// A Unix-domain socket serving plaintext HTTP/1.1 (and h2c) with the same routes, to
    /// reach this very instance even when several share `listen` through SO_REUSEPORT;
    /// none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_socket: Option<PathBuf>,
    /// Start in standby: load and warm up the models and serve `check_socket`, but open no
    /// public listener until SIGUSR2.
    pub standby: bool,
    /// Seconds without any request after which the gateway drains and exits 0; 0 = never.
    pub idle_exit_s: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            io_threads: 0,
            io: IoBackend::Auto,
            max_connections: 10_000,
            backlog: 1024,
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            keepalive_idle_timeout_ms: 75_000,
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_ms: 30_000,
            check_socket: None,
            standby: false,
            idle_exit_s: 0,
        }
    }
}

impl ServerConfig {
    /// `io_threads`, with 0 resolved to the number of available cores.
    pub fn resolved_io_threads(&self) -> usize {
        match self.io_threads {
            0 => available_cores(),
            n => n,
        }
    }

    /// The TLS handshake deadline.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_timeout_ms)
    }

    /// The deadline for a request's headers.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// How long an idle keep-alive connection is kept.
    pub fn keepalive_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_idle_timeout_ms)
    }

    /// The deadline for reading a body and answering.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long without a request before the gateway exits; `None` when `idle_exit_s` is 0.
    pub fn idle_exit(&self) -> Option<Duration> {
        (self.idle_exit_s > 0).then(|| Duration::from_secs(self.idle_exit_s))
    }
}

/// Longest path a Unix-domain socket can be bound to (`sun_path` holds 108 bytes, the last
/// one a NUL).
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

/// Longest `server.idle_exit_s` accepted: a year (anything longer means "never": use 0).
pub const MAX_IDLE_EXIT_S: u64 = 365 * 86_400;

/// TLS termination. With no certificate configured, a self-signed development
/// certificate is generated at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve TLS; `false` serves plaintext HTTP/1.1 and h2c (behind another terminator).
    pub enabled: bool,
    /// PEM certificate chain file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<PathBuf>,
    /// PEM private key file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// PEM certificate chain text (usually from the `tls_cert` secret); wins over `cert_path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM private key text (usually from the `tls_key` secret); wins over `key_path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// How often the certificate and key files are looked at for changes, ms (SIGHUP
    /// reloads at once).
    pub reload_interval_ms: u64,
    /// `Strict-Transport-Security: max-age=` on every HTTPS answer, seconds; 0 = none.
    pub hsts_max_age_s: u64,
    /// PEM CA bundle for client certificates (mTLS): a client presenting a certificate it
    /// issued gets the `admin` scope without an API key. A certificate is asked for,
    /// never required; one that does not verify fails the handshake. Read at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_path: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cert_path: None,
            key_path: None,
            cert: None,
            key: None,
            reload_interval_ms: 1000,
            hsts_max_age_s: 31_536_000,
            client_ca_path: None,
        }
    }
}

impl TlsConfig {
    /// The look interval.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }

    /// The `Strict-Transport-Security` value, when TLS is on and HSTS not turned off.
    pub fn hsts(&self) -> Option<String> {
        (self.enabled && self.hsts_max_age_s > 0)
            .then(|| format!("max-age={}", self.hsts_max_age_s))
    }
}

/// The compute threads that run models.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// Compute threads; 0 = half the available cores, at least 1.
    pub threads: usize,
    /// Threads one forward pass may use inside candle (rayon); 1 suits small models.
    pub intra_op_threads: usize,
    /// Inference jobs allowed to wait; a full queue answers 503 with Retry-After.
    pub queue_capacity: usize,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            intra_op_threads: 1,
            queue_capacity: 1024,
        }
    }
}

impl ComputeConfig {
    /// `threads`, with 0 resolved to half the available cores (at least one).
    pub fn resolved_threads(&self) -> usize {
        match self.threads {
            0 => (available_cores() / 2).max(1),
            n => n,
        }
    }
}

/// The answer cache: an in-process LRU (L1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache answers at all.
    pub enabled: bool,
    /// Seconds an answer is served from the cache (the seed stack's hour).
    pub ttl_s: u64,
    /// The in-process tier.
    pub l1: L1Config,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_s: 3600,
            l1: L1Config::default(),
        }
    }
}

impl CacheConfig {
    /// How long an answer lives.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_s)
    }
}

/// Bounds of the in-process cache tier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct L1Config {
    /// Entries kept.
    pub max_entries: usize,
    /// Bytes kept (answers plus a fixed per-entry overhead).
    pub max_bytes: usize,
    /// Independently locked shards.
    pub shards: usize,
}

impl Default for L1Config {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            shards: 16,
        }
    }
}

/// Redis, the second cache tier. Without `url`, only the in-process tier runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:6379/0` or `rediss://` (TLS); may carry a password, so it is a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Password, when not in the URL (usually from the `redis_password` secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Pooled connections.
    pub pool_size: u32,
    /// Milliseconds to wait for a pooled connection, connecting included.
    pub connect_timeout_ms: u64,
    /// Milliseconds one command may take before it counts as a miss.
    pub timeout_ms: u64,
    /// Consecutive failures that open the circuit (Redis skipped, reported down).
    pub breaker_threshold: u32,
    /// Milliseconds the circuit stays open before one probe.
    pub breaker_cooldown_ms: u64,
    /// Milliseconds between health pings.
    pub health_interval_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            pool_size: 8,
            connect_timeout_ms: 200,
            timeout_ms: 100,
            breaker_threshold: 3,
            breaker_cooldown_ms: 1000,
            health_interval_ms: 1000,
        }
    }
}

impl RedisConfig {
    /// The URL to connect to, with `password` put in when the URL has none.
    pub fn connection_url(&self) -> Option<String> {
        let url = self.url.as_ref()?.expose();
        let Some(password) = &self.password else {
            return Some(url.to_owned());
        };
        let (scheme, rest) = url.split_once("://")?;
        if rest.contains('@') {
            return Some(url.to_owned());
        }
        Some(format!(
            "{scheme}://:{}@{rest}",
            percent_encode(password.expose())
        ))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// PostgreSQL. Without `url`, the prediction log is off (the embedded default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user@host:5432/db` (or a `key=value` string); a secret, as it may carry
    /// a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Password, when not in the URL (usually from the `database_password` secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Milliseconds to wait for a connection.
    pub connect_timeout_ms: u64,
    /// Apply the embedded migrations at start (and on every reconnect). Off: run
    /// `infergate migrate` yourself.
    pub migrate_on_start: bool,
    /// Speak TLS to Postgres, verifying it against this PEM CA bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_path: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            connect_timeout_ms: 2000,
            migrate_on_start: true,
            tls_ca_path: None,
        }
    }
}

/// The prediction log's queue, batching, spool and retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PredictionLogConfig {
    /// Rows held between the request path and the writer.
    pub queue_capacity: usize,
    /// Rows per COPY batch.
    pub batch_rows: usize,
    /// Milliseconds a row waits for its batch to fill.
    pub flush_interval_ms: u64,
    /// Milliseconds one batch write may take before it counts as failed (and is spooled).
    pub write_timeout_ms: u64,
    /// First and longest wait between attempts while Postgres fails, milliseconds.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Directory of the on-disk spool (rows waiting for Postgres). Keep it on a volume.
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold; past it rows are dropped, counted and logged.
    pub spool_max_bytes: u64,
    /// Store the client's IP address with each row (off: NULL, for privacy).
    pub log_client_addr: bool,
    /// Milliseconds a `/stats` reading of the table is reused.
    pub stats_cache_ms: u64,
    /// Delete rows older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// Seconds between retention passes.
    pub retention_interval_s: u64,
    /// Rows per retention DELETE.
    pub retention_batch_rows: u32,
}

impl Default for PredictionLogConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_rows: 1000,
            flush_interval_ms: 200,
            write_timeout_ms: 10_000,
            retry_initial_ms: 100,
            retry_max_ms: 5000,
            spool_dir: PathBuf::from("spool"),
            spool_max_bytes: 1 << 30,
            log_client_addr: false,
            stats_cache_ms: 1000,
            retention_days: 0,
            retention_interval_s: 300,
            retention_batch_rows: 5000,
        }
    }
}

/// Dynamic batching of distinct requests for one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Most rows in one forward pass; 1 turns batching off.
    pub max_size: usize,
    /// Milliseconds a request waits for company while every compute thread is busy (a
    /// request never waits while one is idle).
    pub max_wait_ms: u64,
    /// Requests waiting to be batched; more answer 503.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_size: 32,
            max_wait_ms: 2,
            queue_capacity: 4096,
        }
    }
}

/// A shared dependency `/ready` may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    /// The L2 cache.
    Redis,
    /// The prediction log's PostgreSQL.
    Database,
}

/// What `/ready` requires besides warm models and no drain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadyConfig {
    /// Dependencies whose outage makes this replica unready (503). Empty by default: a
    /// Redis or Postgres outage degrades every replica alike, so taking them all out of
    /// rotation helps nobody.
    pub require: Vec<Dependency>,
}

/// Request coalescing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoalesceConfig {
    /// Identical concurrent cache misses share one inference.
    pub enabled: bool,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Which tabular model to serve. Without `path`, the bundled Iris demo model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A safetensors weights file to serve instead of the bundled model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Its manifest; default `manifest.json` beside `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_path: Option<PathBuf>,
    /// A test aid: every forward pass of a tabular model (this one and the repository's)
    /// first sleeps this long, ms (a deliberately slow model, for deadline, overload and
    /// reload tests and benchmarks); 0 = none.
    pub forward_delay_ms: u64,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `json` or `pretty`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `infergate=debug,info`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

/// Graceful shutdown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Milliseconds in-flight requests get to finish after SIGTERM/SIGINT.
    pub drain_timeout_ms: u64,
    /// Milliseconds an HTTP/1.1 keep-alive connection may still send one more request once
    /// the drain has started (answered with `Connection: close`); silent that long, it is
    /// closed. Less than `drain_timeout_ms`.
    pub linger_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 30_000,
            linger_ms: 1000,
        }
    }
}

impl ShutdownConfig {
    /// The drain deadline.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// How long a keep-alive connection may stay silent once the drain has started.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

/// Where Docker secrets are read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Directory holding secret files (`tls_cert`, `tls_key`).
    pub dir: PathBuf,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/run/secrets"),
        }
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Where to look for configuration, from the command line.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory holding `default.toml` and `<profile>.toml`.
    pub config_dir: PathBuf,
    /// Profile whose `<profile>.toml` is layered over `default.toml`; it must exist.
    pub profile: Option<String>,
    /// One more TOML file, layered over the directory's files; it must exist.
    pub config_file: Option<PathBuf>,
    /// Values given as flags: the top layer.
    pub flags: FlagOverrides,
}

/// A validated configuration and the layers it came from (for `print-config --sources`).
#[derive(Debug)]
pub struct Loaded {
    /// The merged, validated configuration.
    pub config: Config,
    /// The layered figment, to look each value's source up.
    pub figment: Figment,
}

impl Loaded {
    /// The file `key`'s value was read from, when it came from a secret file (the
    /// secrets directory, or `INFERGATE_<KEY>_FILE`).
    pub fn file_of(&self, key: &str) -> Option<PathBuf> {
        let metadata = self.figment.find_metadata(key)?;
        if metadata.name != layers::SECRET_NAME {
            return None;
        }
        metadata
            .source
            .as_ref()
            .and_then(figment::Source::file_path)
            .map(Path::to_owned)
    }
}

/// One configuration problem and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key (`server.listen`), or empty when the whole source is at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// Where the value came from: a file and key, an environment variable, a secret file,
    /// a flag.
    pub source: String,
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e.key.is_empty() {
                true => write!(f, "  - {} (in {})", e.message, e.source)?,
                false => write!(f, "  - {}: {} (from {})", e.key, e.message, e.source)?,
            }
        }
        Ok(())
    }
}

/// Most errors reported before giving up (each round fixes one bad value and retries).
const MAX_ERRORS: usize = 64;

/// Loads, layers and validates the configuration, reporting every error found.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let mut figment = Figment::from(layers::defaults());
    // default.toml is optional (the built-in defaults are complete); a file asked for by
    // name (profile, --config) must exist.
    let default_file = opts.config_dir.join("default.toml");
    if default_file.exists() {
        figment = figment.merge(Toml::file_exact(default_file));
    }
    if let Some(profile) = &opts.profile {
        let path = opts.config_dir.join(format!("{profile}.toml"));
        if require_file(&path, "profile file", &mut errors) {
            figment = figment.merge(Toml::file_exact(path));
        }
    }
    if let Some(path) = &opts.config_file
        && require_file(path, "config file", &mut errors)
    {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(layers::env());
    // The secrets directory may itself come from any layer below the secrets.
    let secrets_dir = figment
        .extract_inner::<PathBuf>("secrets.dir")
        .unwrap_or_else(|_| SecretsConfig::default().dir);
    for provider in secrets::discover(&secrets_dir) {
        figment = figment.merge(provider);
    }
    figment = figment.merge(layers::flags(&opts.flags));

    let config = extract_all(&figment, &mut errors);
    if let Some(config) = &config {
        validate(config, &figment, &mut errors);
    }
    match (config, errors.is_empty()) {
        (Some(config), true) => Ok(Loaded { config, figment }),
        _ => Err(ConfigErrors(errors)),
    }
}

fn require_file(path: &Path, what: &str, errors: &mut Vec<ConfigError>) -> bool {
    let exists = path.is_file();
    if !exists {
        errors.push(ConfigError {
            key: String::new(),
            message: format!("{what} {} does not exist", path.display()),
            source: "the command line".to_owned(),
        });
    }
    exists
}

/// Extracts the config, collecting every bad value: after each error, the offending key
/// is reset to its default and extraction retried, so one typo does not hide the next.
fn extract_all(figment: &Figment, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let defaults = Figment::from(layers::defaults());
    let mut attempt = figment.clone();
    for _ in 0..MAX_ERRORS {
        match attempt.extract::<Config>() {
            Ok(config) => return Some(config),
            Err(err) => {
                let mut progressed = false;
                for e in err {
                    let report = layers::describe_error(&e);
                    if errors.contains(&report) {
                        continue;
                    }
                    errors.push(report);
                    if !e.path.is_empty() {
                        let key = e.path.join(".");
                        let reset =
                            defaults
                                .find_value(&key)
                                .unwrap_or(figment::value::Value::Empty(
                                    figment::value::Tag::Default,
                                    figment::value::Empty::None,
                                ));
                        attempt = attempt.merge(Serialized::global(&key, reset));
                        progressed = true;
                    }
                }
                if !progressed {
                    return None;
                }
            }
        }
    }
    None
}

/// Checks what types alone cannot: ranges and values that only make sense together.
fn validate(config: &Config, figment: &Figment, errors: &mut Vec<ConfigError>) {
    let mut check = |ok: bool, key: &str, message: &str| {
        if !ok {
            errors.push(ConfigError {
                key: key.to_owned(),
                message: message.to_owned(),
                source: layers::describe_key(figment, key),
            });
        }
    };
    let s = &config.server;
    check(
        s.io_threads <= 1024,
        "server.io_threads",
        "must be at most 1024",
    );
    check(
        s.max_connections >= 1,
        "server.max_connections",
        "must be at least 1",
    );
    check(s.backlog >= 1, "server.backlog", "must be at least 1");
    check(
        s.max_body_bytes >= 1,
        "server.max_body_bytes",
        "must be at least 1",
    );
    for (key, ms) in [
        (
            "server.tls_handshake_timeout_ms",
            s.tls_handshake_timeout_ms,
        ),
        ("server.header_read_timeout_ms", s.header_read_timeout_ms),
        (
            "server.keepalive_idle_timeout_ms",
            s.keepalive_idle_timeout_ms,
        ),
        ("server.request_timeout_ms", s.request_timeout_ms),
        (
            "shutdown.drain_timeout_ms",
            config.shutdown.drain_timeout_ms,
        ),
    ] {
        check(ms >= 1, key, "must be at least 1 millisecond");
    }
    check(
        s.check_socket.as_ref().is_none_or(|p| {
            let len = p.as_os_str().len();
            (1..=MAX_UNIX_SOCKET_PATH).contains(&len)
        }),
        "server.check_socket",
        "must be a path of 1 to 107 bytes (the limit of a Unix socket address)",
    );
    check(
        s.idle_exit_s <= MAX_IDLE_EXIT_S,
        "server.idle_exit_s",
        "must be at most 31536000 (a year); 0 turns it off",
    );
    check(
        config.shutdown.linger_ms < config.shutdown.drain_timeout_ms,
        "shutdown.linger_ms",
        "must be less than shutdown.drain_timeout_ms",
    );
    let c = &config.compute;
    check(c.threads <= 1024, "compute.threads", "must be at most 1024");
    check(
        (1..=1024).contains(&c.intra_op_threads),
        "compute.intra_op_threads",
        "must be between 1 and 1024",
    );
    check(
        c.queue_capacity >= 1,
        "compute.queue_capacity",
        "must be at least 1",
    );
    let k = &config.cache;
    check(k.ttl_s >= 1, "cache.ttl_s", "must be at least 1 second");
    check(
        k.l1.max_entries >= 1,
        "cache.l1.max_entries",
        "must be at least 1",
    );
    check(
        k.l1.max_bytes >= 1024,
        "cache.l1.max_bytes",
        "must be at least 1024",
    );
    check(
        (1..=256).contains(&k.l1.shards),
        "cache.l1.shards",
        "must be between 1 and 256",
    );
    let r = &config.redis;
    check(
        r.url.as_ref().is_none_or(|u| {
            let u = u.expose();
            u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("redis+unix://")
        }),
        "redis.url",
        "must start with redis://, rediss:// or redis+unix://",
    );
    check(
        (1..=256).contains(&r.pool_size),
        "redis.pool_size",
        "must be between 1 and 256",
    );
    for (key, ms) in [
        ("redis.connect_timeout_ms", r.connect_timeout_ms),
        ("redis.timeout_ms", r.timeout_ms),
        ("redis.breaker_cooldown_ms", r.breaker_cooldown_ms),
        ("redis.health_interval_ms", r.health_interval_ms),
    ] {
        check(ms >= 1, key, "must be at least 1 millisecond");
    }
    check(
        r.breaker_threshold >= 1,
        "redis.breaker_threshold",
        "must be at least 1",
    );
    let d = &config.database;
    check(
        d.url
            .as_ref()
            .is_none_or(|u| u.expose().parse::<tokio_postgres::Config>().is_ok()),
        "database.url",
        "is not a PostgreSQL connection URL (postgres://user@host:5432/db)",
    );
    check(
        d.connect_timeout_ms >= 1,
        "database.connect_timeout_ms",
        "must be at least 1 millisecond",
    );
    let p = &config.prediction_log;
    check(
        p.queue_capacity >= 1,
        "prediction_log.queue_capacity",
        "must be at least 1",
    );
    check(
        (1..=100_000).contains(&p.batch_rows),
        "prediction_log.batch_rows",
        "must be between 1 and 100000",
    );
    for (key, ms) in [
        ("prediction_log.flush_interval_ms", p.flush_interval_ms),
        ("prediction_log.write_timeout_ms", p.write_timeout_ms),
        ("prediction_log.retry_initial_ms", p.retry_initial_ms),
        ("prediction_log.stats_cache_ms", p.stats_cache_ms),
    ] {
        check(ms >= 1, key, "must be at least 1 millisecond");
    }
    check(
        p.retry_max_ms >= p.retry_initial_ms,
        "prediction_log.retry_max_ms",
        "must be at least prediction_log.retry_initial_ms",
    );
    check(
        p.spool_max_bytes >= 1024 * 1024,
        "prediction_log.spool_max_bytes",
        "must be at least 1 MiB",
    );
    check(
        p.retention_days == 0 || (p.retention_interval_s >= 1 && p.retention_batch_rows >= 1),
        "prediction_log.retention_interval_s",
        "retention needs retention_interval_s and retention_batch_rows of at least 1",
    );
    let require = &config.ready.require;
    check(
        !require.contains(&Dependency::Redis)
            || (config.redis.url.is_some() && config.cache.enabled),
        "ready.require",
        "requires redis, but no redis.url is configured (or the cache is off)",
    );
    check(
        !require.contains(&Dependency::Database) || d.url.is_some(),
        "ready.require",
        "requires database, but no database.url is configured",
    );
    let b = &config.batch;
    check(
        (1..=4096).contains(&b.max_size),
        "batch.max_size",
        "must be between 1 and 4096",
    );
    check(
        b.max_wait_ms <= 1000,
        "batch.max_wait_ms",
        "must be at most 1000",
    );
    check(
        b.queue_capacity >= 1,
        "batch.queue_capacity",
        "must be at least 1",
    );
    let t = &config.tls;
    let has_cert = t.cert.is_some() || t.cert_path.is_some();
    let has_key = t.key.is_some() || t.key_path.is_some();
    check(
        t.enabled || t.client_ca_path.is_none(),
        "tls.client_ca_path",
        "needs tls.enabled: client certificates are a part of the TLS handshake",
    );
    check(
        !t.enabled || has_cert == has_key,
        if has_cert { "tls.cert" } else { "tls.key" },
        "TLS needs both a certificate and a private key (or neither, for a development certificate)",
    );
    check(
        config.model.manifest_path.is_none() || config.model.path.is_some(),
        "model.manifest_path",
        "is set but model.path is not",
    );
    check(
        config.model.forward_delay_ms <= 60_000,
        "model.forward_delay_ms",
        "must be at most 60000",
    );
    config.image.validate(&mut check);
    check(
        (100..=3_600_000).contains(&config.tls.reload_interval_ms),
        "tls.reload_interval_ms",
        "must be between 100 and 3600000",
    );
    config.http.validate(&mut check);
    config.auth.validate(&mut check);
    config.rate_limit.validate(&mut check);
    config.admission.validate(&mut check);
    config.redirect.validate(config.server.listen, &mut check);
    config.otlp.validate(&mut check);
    config.repository.validate(&mut check);
    config.shadow.validate(&mut check);
    check(
        tracing_subscriber::EnvFilter::try_new(&config.log.level).is_ok(),
        "log.level",
        "is not a valid tracing filter (e.g. `info` or `infergate=debug,info`)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(&LoadOptions {
            config_dir: dir.path().to_owned(),
            ..LoadOptions::default()
        })
        .unwrap();
        assert_eq!(loaded.config.server.listen.port(), 8443);
        assert_eq!(loaded.config.server.max_body_bytes, 10 * 1024 * 1024);
        assert!(loaded.config.tls.enabled);
    }

    #[test]
    fn semantic_errors_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.toml"),
            "[compute]\nqueue_capacity = 0\n[tls]\ncert_path = \"/x.pem\"\n",
        )
        .unwrap();
        let errors = load(&LoadOptions {
            config_dir: dir.path().to_owned(),
            ..LoadOptions::default()
        })
        .unwrap_err();
        let text = errors.to_string();
        assert!(text.contains("compute.queue_capacity"), "{text}");
        assert!(text.contains("tls.cert"), "{text}");
        assert!(text.contains("default.toml"), "{text}");
    }

    #[test]
    fn rollout_knobs_default_off_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(&LoadOptions {
            config_dir: dir.path().to_owned(),
            ..LoadOptions::default()
        })
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.server.check_socket, None);
        assert!(!c.server.standby);
        assert_eq!(c.server.idle_exit(), None);
        assert_eq!(c.shutdown.linger(), Duration::from_millis(1000));

        std::fs::write(
            dir.path().join("default.toml"),
            format!(
                "[server]\ncheck_socket = \"/run/{}.sock\"\nidle_exit_s = 99999999999\n\
                 [shutdown]\ndrain_timeout_ms = 500\nlinger_ms = 500\n",
                "x".repeat(120)
            ),
        )
        .unwrap();
        let text = load(&LoadOptions {
            config_dir: dir.path().to_owned(),
            ..LoadOptions::default()
        })
        .unwrap_err()
        .to_string();
        assert!(text.contains("server.check_socket"), "{text}");
        assert!(text.contains("server.idle_exit_s"), "{text}");
        assert!(text.contains("shutdown.linger_ms"), "{text}");
    }

    #[test]
    fn standby_and_idle_exit_flags_are_the_top_layer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.toml"),
            "[server]\nstandby = false\nidle_exit_s = 5\ncheck_socket = \"/tmp/c.sock\"\n",
        )
        .unwrap();
        let loaded = load(&LoadOptions {
            config_dir: dir.path().to_owned(),
            flags: FlagOverrides {
                standby: Some(true),
                idle_exit_s: Some(300),
                ..FlagOverrides::default()
            },
            ..LoadOptions::default()
        })
        .unwrap();
        assert!(loaded.config.server.standby);
        assert_eq!(
            loaded.config.server.idle_exit(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            loaded.config.server.check_socket.as_deref(),
            Some(Path::new("/tmp/c.sock"))
        );
    }

    #[test]
    fn missing_profile_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let errors = load(&LoadOptions {
            config_dir: dir.path().to_owned(),
            profile: Some("nope".to_owned()),
            ..LoadOptions::default()
        })
        .unwrap_err();
        assert!(errors.to_string().contains("nope.toml"), "{errors}");
    }
}
