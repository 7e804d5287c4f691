//! The `[admission]` section: how long a request may ask to be given, and the adaptive
//! concurrency limit that sheds model work before queues grow.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Deadlines and the adaptive limit (see `deadline` and `admission`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Longest deadline a request may ask for with `X-Request-Timeout` or `grpc-timeout`,
    /// ms; a longer ask is cut to it. A request asking none gets
    /// `server.request_timeout_ms`, cut to this too.
    pub max_deadline_ms: u64,
    /// Adapt a concurrency limit per model from the latency of its work; off: only the
    /// fixed queue capacities shed.
    pub adaptive: bool,
    /// The limit a model starts at: model work (cache misses) admitted at once.
    pub initial_limit: usize,
    /// The limit never falls below this...
    pub min_limit: usize,
    /// ...nor rises above this.
    pub max_limit: usize,
    /// Work slower than `tolerance` × the model's baseline latency (its recent best)
    /// and also slower than baseline + `slack_ms`, on average over the last few pieces,
    /// counts as queueing: the limit shrinks.
    pub tolerance: f64,
    /// Latency within this much of the baseline never counts as queueing, ms: a wait that
    /// short costs a client little, and on a model that answers in microseconds it is the
    /// noise of a busy machine (a burst's own queue), not congestion.
    pub slack_ms: u64,
    /// One shrink (to what Little's law says fits, at most once per latency) never takes
    /// the limit below this share of the work in flight.
    pub backoff: f64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_deadline_ms: 30_000,
            adaptive: true,
            initial_limit: 1024,
            min_limit: 1,
            max_limit: 4096,
            tolerance: 2.0,
            slack_ms: 50,
            backoff: 0.5,
        }
    }
}

impl AdmissionConfig {
    /// The cap on a request's deadline.
    pub fn max_deadline(&self) -> Duration {
        Duration::from_millis(self.max_deadline_ms)
    }

    /// The slack below which latency is noise.
    pub fn slack(&self) -> Duration {
        Duration::from_millis(self.slack_ms)
    }

    /// Checks ranges; `check(ok, key, message)` records a failure.
    pub fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            self.max_deadline_ms >= 1,
            "admission.max_deadline_ms",
            "must be at least 1",
        );
        check(
            self.min_limit >= 1,
            "admission.min_limit",
            "must be at least 1",
        );
        check(
            self.min_limit <= self.max_limit,
            "admission.max_limit",
            "must be at least admission.min_limit",
        );
        check(
            (self.min_limit..=self.max_limit).contains(&self.initial_limit),
            "admission.initial_limit",
            "must be between admission.min_limit and admission.max_limit",
        );
        check(
            self.tolerance.is_finite() && self.tolerance > 1.0,
            "admission.tolerance",
            "must be above 1 (a multiple of the baseline latency)",
        );
        check(
            self.backoff.is_finite() && self.backoff > 0.0 && self.backoff < 1.0,
            "admission.backoff",
            "must be between 0 and 1, exclusive",
        );
    }
}
