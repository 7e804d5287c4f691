//! The state every request sees, built once at start by `app` and shared by all threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::Auth;
use crate::deadline::DeadlinePolicy;
use crate::idle_exit::LastRequest;
use crate::infer::Infer;
use crate::predict::Predictor;
use crate::rate_limit::RateLimits;
use crate::repository::Repository;
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
    /// The read-through to the models.
    pub predictor: Predictor,
    /// The models and compute pool.
    pub infer: Arc<Infer>,
    /// The model repository, when `repository.path` is set.
    pub repository: Option<Arc<Repository>>,
    /// Prediction counters for `/stats`.
    pub stats: Arc<Stats>,
    /// Drain state and open connections.
    pub shutdown: Arc<Shutdown>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Body limits.
    pub limits: Limits,
    /// The API keys.
    pub auth: Arc<Auth>,
    /// The rate limits.
    pub rate_limits: RateLimits,
    /// Where finished request spans go (an OTLP collector, or nowhere).
    pub traces: Arc<Traces>,
    /// Name of the I/O backend serving connections (`epoll`).
    pub io_backend: &'static str,
    /// Which cache tiers are on: `"l1+l2"`, `"l1"` or `"disabled"`.
    pub cache_mode: &'static str,
    /// Dependencies whose outage makes `/ready` 503.
    pub ready_require: Vec<Dependency>,
    /// When a request last started or ended, for `server.idle_exit_s`.
    pub last_request: LastRequest,
    models_warm: AtomicBool,
    listening: AtomicBool,
}

impl Gateway {
    /// Gateway state; not ready until [`Gateway::mark_models_warm`].
    pub fn new(parts: GatewayParts) -> Self {
        Self {
            predictor: parts.predictor,
            infer: parts.infer,
            repository: parts.repository,
            stats: parts.stats,
            shutdown: parts.shutdown,
            metrics: parts.metrics,
            limits: parts.limits,
            auth: parts.auth,
            rate_limits: parts.rate_limits,
            traces: parts.traces,
            io_backend: parts.io_backend,
            cache_mode: parts.cache_mode,
            ready_require: parts.ready_require,
            last_request: LastRequest::new(),
            models_warm: AtomicBool::new(false),
            listening: AtomicBool::new(false),
        }
    }

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

/// What [`Gateway::new`] is built from.
pub struct GatewayParts {
    pub predictor: Predictor,
    pub infer: Arc<Infer>,
    pub repository: Option<Arc<Repository>>,
    pub stats: Arc<Stats>,
    pub shutdown: Arc<Shutdown>,
    pub metrics: PrometheusHandle,
    pub limits: Limits,
    pub auth: Arc<Auth>,
    pub rate_limits: RateLimits,
    pub traces: Arc<Traces>,
    pub io_backend: &'static str,
    /// Which cache tiers are on: `"l1+l2"`, `"l1"` or `"disabled"`.
    pub cache_mode: &'static str,
    /// Dependencies whose outage makes `/ready` 503.
    pub ready_require: Vec<Dependency>,
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
