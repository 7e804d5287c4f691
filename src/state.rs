//! The state every request sees, built once at start by `app` and shared by all threads:
//! what the request path needs ([`Serving`]) beside what starting, draining and reporting
//! on the gateway need ([`Lifecycle`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::admission::Admission;
use crate::auth::{Auth, Scope};
use crate::cache::CacheMode;
use crate::cache::l2::L2;
use crate::deadline::DeadlinePolicy;
use crate::idle_exit::LastRequest;
use crate::infer::Infer;
use crate::predict::Predictor;
use crate::prediction_log::PredictionLog;
use crate::rate_limit::RateLimits;
use crate::repository::Repository;
use crate::shadow::Shadow;
use crate::shutdown::Shutdown;
use crate::stats::Stats;
use crate::telemetry::traces::Traces;

/// What a request body may be: its size, its time, its pace.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest accepted body, bytes (413 above).
    pub max_bytes: usize,
    /// Longest the whole body may take (408 past it).
    pub timeout: Duration,
    /// Slowest average pace a body may arrive at once `grace` has passed, bytes per
    /// second (408 below it); 0 = any pace.
    pub min_bytes_per_s: u64,
    /// How long a body may take before its pace counts.
    pub grace: Duration,
}

/// Request limits enforced before a body reaches a handler.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request body's size, time and pace.
    pub body: BodyLimits,
    /// Most header fields a request may carry (431 above).
    pub max_headers: usize,
    /// How long a request is given.
    pub deadline: DeadlinePolicy,
}

/// Shared, thread-safe gateway state.
pub struct Gateway {
    /// What a request meets on its way through.
    pub serving: Serving,
    /// What starting, draining and reporting on the gateway need.
    pub lifecycle: Lifecycle,
}

/// What the request path needs: admission at the edge, the models, the read-through.
pub struct Serving {
    /// The read-through to the models.
    pub predictor: Predictor,
    /// The models and compute pool: requests find and route a model through its catalog.
    pub infer: Arc<Infer>,
    /// Body, header and deadline limits.
    pub limits: Limits,
    /// The API keys.
    pub auth: Arc<Auth>,
    /// The rate limits.
    pub rate_limits: RateLimits,
    /// Where finished request spans go (an OTLP collector, or nowhere).
    pub traces: Arc<Traces>,
    /// When a request last started or ended, for `server.idle_exit_s`.
    pub last_request: LastRequest,
    /// Whether the pages are served, and to whom.
    pub pages: PagesSettings,
}

/// Whether the pages for people are served (`http::pages`), and to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagesSettings {
    /// The pages (and the console's numbers) are served; off, their paths are unknown.
    pub enabled: bool,
    /// The scope a key needs to open a page; `None`: anyone may.
    pub scope: Option<Scope>,
}

/// What lifecycle and introspection need: the drain, readiness, `/stats` and `/metrics`,
/// and shared handles to what the read-through also holds (the drain closes the shadow
/// runner and the log; `/ready` and `/stats` read their health).
pub struct Lifecycle {
    /// Drain state and open connections.
    pub shutdown: Arc<Shutdown>,
    /// Whether the models are warm and the public listener open.
    pub flags: Flags,
    /// Dependencies whose outage makes `/ready` 503.
    pub ready_require: Vec<Dependency>,
    /// The I/O backend serving connections.
    pub io_backend: IoKind,
    /// Where image models run: the CPU, or the GPU a cuda build found.
    pub image_device: candle_core::DeviceLocation,
    /// Which cache tiers are on.
    pub cache_mode: CacheMode,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Prediction counters for `/stats`.
    pub stats: Arc<Stats>,
    /// The model repository, when `repository.path` is set: loads and unloads, SIGHUP's look.
    pub repository: Option<Arc<Repository>>,
    /// The prediction log, when a database is configured: its health and counters, closed
    /// last by the drain.
    pub log: Option<Arc<PredictionLog>>,
    /// The runner mirroring requests to shadow versions (the drain closes it before the log).
    pub shadow: Arc<Shadow>,
    /// The adaptive limits, for `/stats`.
    pub admission: Arc<Admission>,
    /// Redis (the L2 cache), for its health; `None` when it is off.
    pub redis: Option<Arc<L2>>,
}

/// How far the gateway has come: models warm, public listener open. Both start false.
#[derive(Debug, Default)]
pub struct Flags {
    models_warm: AtomicBool,
    listening: AtomicBool,
}

impl Flags {
    /// Records that every model has answered a warm-up inference.
    pub fn mark_models_warm(&self) {
        self.models_warm.store(true, Ordering::SeqCst);
    }

    /// Whether every model has answered a warm-up inference.
    pub fn models_warm(&self) -> bool {
        self.models_warm.load(Ordering::SeqCst)
    }

    /// Records whether the public listener is open (false in standby and once the drain
    /// has closed it).
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }

    /// Whether the public listener is open.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }
}

/// The I/O backend serving connections: `server::backend::Backend` without its rings'
/// setup, which nothing but the listener needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// io_uring through tokio-uring.
    Uring,
    /// Plain tokio (epoll).
    Epoll,
}

impl IoKind {
    /// The name `/stats`, `/ready`, the log and the metrics show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        }
    }
}

/// A shared dependency `/ready` may require (`ready.require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    /// The L2 cache.
    Redis,
    /// The prediction log's PostgreSQL.
    Database,
}
