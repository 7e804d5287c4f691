//! The `[admission]` section: how long a request may ask to be given, and the adaptive
//! concurrency limit that sheds model work before queues grow.

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::admission::limit::LimitSettings;
use crate::config::check::Checks;
use crate::config::server::ServerSection;
use crate::deadline::DeadlinePolicy;

/// Request deadlines, and the adaptive concurrency limit in front of each model.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionSection {
    /// Longest deadline a request may ask for, ms: `X-Request-Timeout: 250ms` (or 2s,
    /// 1.5s, 100us) or gRPC's `grpc-timeout: 250m`; a longer ask is cut to it, an
    /// unreadable one gets 400 invalid_timeout. A request asking none gets
    /// `server.request_timeout_ms`, cut to this too. The deadline counts from the request
    /// head; work still queued when it passes (in the batcher, at batch assembly, for a
    /// compute thread) is dropped, never computed, and the client gets 504
    /// deadline_exceeded.
    pub max_deadline_ms: u64,
    /// Adapt a concurrency limit per model: how much model work (cache misses; hits never
    /// wait) is admitted at once. It grows by one per limit's worth of work answered near
    /// the model's best latency, and shrinks when work queues (see `tolerance`). Past the
    /// limit: 503 overloaded, with a Retry-After computed from the model's latency; a
    /// request with less time left than the model's best gets 504 at once. /ready is not
    /// affected. `false`: only the fixed queue capacities shed.
    pub adaptive: bool,
    /// The limit a model starts at: model work admitted at once. It starts high: a burst
    /// on a model that keeps up is never shed; only work that queues brings it down.
    pub initial_limit: usize,
    /// The limit never falls below this, nor below `tolerance` × `compute.threads`: that
    /// much work finishes within the target latency (tolerance × the model's best) even
    /// when nothing runs faster than the model's best, each thread with its next piece
    /// decoded and waiting. Slower answers at that level are the machine's load (the
    /// requests' own TLS and decoding, a load generator beside the gateway), not a queue
    /// that shedding could shorten: below it, shedding only spends on refusals the CPU the
    /// model needed.
    pub min_limit: usize,
    /// The limit never rises above this.
    pub max_limit: usize,
    /// Work slower than `tolerance` × the model's baseline latency (its recent best) and
    /// also slower than baseline + `slack_ms`, on average over the last few pieces (or
    /// work that runs out of time), counts as queueing: the limit shrinks to what would
    /// finish within that (Little's law).
    pub tolerance: f64,
    /// Latency within this much of the baseline never counts as queueing, ms: a wait that
    /// short costs a client little, and on a model that answers in microseconds it is the
    /// noise of a busy machine (a burst's own queue), not congestion.
    pub slack_ms: u64,
    /// One shrink never takes the limit below this share of the work in flight.
    pub backoff: f64,
}

impl Default for AdmissionSection {
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

impl AdmissionSection {
    /// The adaptive limit each model gets on `compute_threads` threads; `None` with
    /// `adaptive = false`.
    pub fn limit_settings(&self, compute_threads: usize) -> Option<LimitSettings> {
        self.adaptive.then(|| LimitSettings {
            initial: self.initial_limit,
            min: self
                .min_limit
                .max(self.floor(compute_threads))
                .min(self.max_limit),
            max: self.max_limit,
            tolerance: self.tolerance,
            slack: Duration::from_millis(self.slack_ms),
            backoff: self.backoff,
        })
    }

    /// What `compute_threads` threads finish within the target latency at the model's
    /// best: Little's law, threads / best × tolerance × best.
    fn floor(&self, compute_threads: usize) -> usize {
        (compute_threads as f64 * self.tolerance).floor() as usize
    }

    /// How long a request is given: `server.request_timeout_ms` unless it asks, never
    /// more than `max_deadline_ms`.
    pub fn deadline_policy(&self, server: &ServerSection) -> DeadlinePolicy {
        DeadlinePolicy {
            default: server.request_timeout(),
            max: Duration::from_millis(self.max_deadline_ms),
        }
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.max_deadline_ms >= 1,
            "admission.max_deadline_ms",
            "must be at least 1",
        );
        checks.check(
            self.min_limit >= 1,
            "admission.min_limit",
            "must be at least 1",
        );
        checks.check(
            self.min_limit <= self.max_limit,
            "admission.max_limit",
            "must be at least admission.min_limit",
        );
        checks.check(
            (self.min_limit..=self.max_limit).contains(&self.initial_limit),
            "admission.initial_limit",
            "must be between admission.min_limit and admission.max_limit",
        );
        checks.check(
            self.tolerance.is_finite() && self.tolerance > 1.0,
            "admission.tolerance",
            "must be above 1 (a multiple of the baseline latency)",
        );
        checks.check(
            self.backoff.is_finite() && self.backoff > 0.0 && self.backoff < 1.0,
            "admission.backoff",
            "must be between 0 and 1, exclusive",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_never_falls_below_what_the_compute_threads_finish_in_time_nor_past_the_max() {
        let section = AdmissionSection::default();
        let on = |threads| section.limit_settings(threads).map(|l| l.min);
        // tolerance 2 by default: two pieces a thread.
        assert_eq!(on(1), Some(2));
        assert_eq!(on(6), Some(12));
        let tolerant = AdmissionSection {
            tolerance: 1.5,
            min_limit: 4,
            ..AdmissionSection::default()
        };
        assert_eq!(tolerant.limit_settings(1).map(|l| l.min), Some(4));
        assert_eq!(tolerant.limit_settings(3).map(|l| l.min), Some(4));
        assert_eq!(tolerant.limit_settings(5).map(|l| l.min), Some(7));
        let low_max = AdmissionSection {
            max_limit: 4,
            initial_limit: 4,
            ..AdmissionSection::default()
        };
        assert_eq!(low_max.limit_settings(16).map(|l| l.min), Some(4));
        let off = AdmissionSection {
            adaptive: false,
            ..AdmissionSection::default()
        };
        assert!(off.limit_settings(4).is_none());
    }
}
