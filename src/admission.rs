//! Adaptive admission: model work (a cache miss on its way to the batcher) is admitted
//! under a concurrency limit per model that [`limit::LimitState`] adapts from how long
//! admitted work takes. Past the limit, a request is shed at once with a `Retry-After`
//! computed from the model's latency, instead of waiting in a queue that only grows:
//! what is admitted keeps answering near the model's own speed. Work that cannot finish
//! within its deadline (less time left than the model's best) is refused here too.
//!
//! Cache hits and coalesced followers never come here: they cost no model work.
//! `/ready` never looks here: a shedding replica is busy, not broken.

pub mod limit;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::admission::limit::{LimitSettings, LimitState};
use crate::deadline::Deadline;
use crate::metrics::{ADMISSION_IN_FLIGHT, ADMISSION_LIMIT, SHED_TOTAL};

/// Why a request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    /// The model's concurrency limit is reached.
    #[error("model {model:?} is at its concurrency limit ({limit}); retry after {} s", retry_after_s(*.retry_after))]
    Concurrency {
        /// The model.
        model: &'static str,
        /// The limit in force.
        limit: usize,
        /// When the work admitted now should have drained.
        retry_after: Duration,
    },
    /// Less time is left than the model's best latency.
    #[error("{left_ms} ms left is less than the model's {best_ms} ms")]
    Deadline { left_ms: u64, best_ms: u64 },
}

/// A shed's `Retry-After`, whole seconds (as HTTP has it), at least 1.
pub fn retry_after_s(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Why a request was shed, as the `reason` label of `infergate_shed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// The adaptive concurrency limit.
    Concurrency,
    /// Less time left than the model needs.
    Deadline,
    /// A fixed queue (batcher, compute, decode) was full.
    QueueFull,
}

impl ShedReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Concurrency => "concurrency",
            Self::Deadline => "deadline",
            Self::QueueFull => "queue_full",
        }
    }
}

/// Counts one shed request in `infergate_shed_total{model, reason}`.
pub fn count_shed(model: &str, reason: ShedReason) {
    metrics::counter!(SHED_TOTAL, "model" => model.to_owned(), "reason" => reason.as_str())
        .increment(1);
}

/// The limit of one model and the work it has admitted.
struct Gate {
    name: &'static str,
    inner: Mutex<GateState>,
    limit_gauge: metrics::Gauge,
    in_flight_gauge: metrics::Gauge,
}

struct GateState {
    limit: LimitState,
    in_flight: usize,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        // Plain counters and a limit: consistent under any panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, state: &GateState) {
        self.limit_gauge.set(state.limit.limit() as f64);
        self.in_flight_gauge.set(state.in_flight as f64);
    }
}

/// A model's limit as `/stats` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GateSnapshot {
    /// The model.
    pub model: &'static str,
    /// Work admitted at once now.
    pub limit: usize,
    /// Work admitted and not finished.
    pub in_flight: usize,
    /// The best latency seen lately, ms.
    pub baseline_ms: Option<f64>,
}

/// The limits of every model; one per process.
pub struct Admission {
    /// `None` with `admission.adaptive = false`: everything is admitted.
    gates: Option<Gates>,
}

/// One gate per model name, made when the model is first seen (models come and go with
/// the repository); the versions of a model share its gate.
struct Gates {
    limit: LimitSettings,
    by_model: RwLock<HashMap<String, Arc<Gate>>>,
}

impl Gates {
    fn get(&self, model: &str) -> Arc<Gate> {
        let known = self.by_model.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = known.get(model) {
            return Arc::clone(gate);
        }
        drop(known);
        let mut known = self
            .by_model
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            known
                .entry(model.to_owned())
                .or_insert_with(|| Arc::new(Gate::new(model, self.limit))),
        )
    }
}

impl Gate {
    fn new(name: &str, limit: LimitSettings) -> Self {
        // Model names are few and live as long as the process: leaked once, so a shed
        // error and the metric labels carry a `&'static str`, not a fresh String.
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let gate = Gate {
            name,
            inner: Mutex::new(GateState {
                limit: LimitState::new(limit),
                in_flight: 0,
            }),
            limit_gauge: metrics::gauge!(ADMISSION_LIMIT, "model" => name),
            in_flight_gauge: metrics::gauge!(ADMISSION_IN_FLIGHT, "model" => name),
        };
        gate.publish(&gate.lock());
        gate
    }
}

impl Admission {
    /// A limit for each of `models` now (and for any model seen later), each starting as
    /// `limit` says; `None` (adaptive admission off) admits everything.
    pub fn new<'a>(
        limit: Option<LimitSettings>,
        models: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let Some(limit) = limit else {
            return Self { gates: None };
        };
        let gates = Gates {
            limit,
            by_model: RwLock::new(HashMap::new()),
        };
        for name in models {
            gates.get(name);
        }
        Self { gates: Some(gates) }
    }

    /// Admits one piece of work for `model` due by `deadline`, or says why not. A model
    /// without a gate (adaptive admission off) admits everything.
    pub fn admit(&self, model: &str, deadline: &Deadline) -> Result<Permit, Shed> {
        let Some(gate) = self.gates.as_ref().map(|g| g.get(model)) else {
            return Ok(Permit { held: None });
        };
        let now = Instant::now();
        let mut state = gate.lock();
        if let Some(best) = state.limit.baseline() {
            let left = deadline.at().saturating_duration_since(now);
            if left < best {
                return Err(Shed::Deadline {
                    left_ms: left.as_millis() as u64,
                    best_ms: best.as_millis().max(1) as u64,
                });
            }
        }
        let limit = state.limit.limit();
        if state.in_flight >= limit {
            return Err(Shed::Concurrency {
                model: gate.name,
                limit,
                retry_after: state
                    .limit
                    .drain_time(state.in_flight, Duration::from_secs(1)),
            });
        }
        state.in_flight += 1;
        gate.publish(&state);
        drop(state);
        Ok(Permit {
            held: Some(Held {
                gate: Arc::clone(&gate),
                admitted: now,
                deadline: deadline.at(),
            }),
        })
    }

    /// Every model's limit, for `/stats`; empty while adaptive admission is off.
    pub fn snapshot(&self) -> Vec<GateSnapshot> {
        let Some(gates) = &self.gates else {
            return Vec::new();
        };
        let known = gates
            .by_model
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<GateSnapshot> = known
            .values()
            .map(|gate| {
                let state = gate.lock();
                GateSnapshot {
                    model: gate.name,
                    limit: state.limit.limit(),
                    in_flight: state.in_flight,
                    baseline_ms: state.limit.baseline().map(|b| b.as_secs_f64() * 1e3),
                }
            })
            .collect();
        out.sort_by_key(|g| g.model);
        out
    }
}

/// Admitted work. Say how it ended ([`Permit::finished`], [`Permit::expired`]). Dropped
/// unsaid, it frees its place; past its deadline (the request gave up waiting) that counts
/// as an expiry, before it (the client went away) it teaches the limit nothing, since a
/// cancellation's short time says nothing of the model's speed.
pub struct Permit {
    held: Option<Held>,
}

struct Held {
    gate: Arc<Gate>,
    admitted: Instant,
    deadline: Instant,
}

impl Permit {
    /// The work finished (answered or failed) after the time since admission.
    pub fn finished(mut self) {
        self.release(|limit, latency, in_flight, now| limit.finished(latency, in_flight, now));
    }

    /// The work ran out of time, or found a queue full: queueing.
    pub fn expired(mut self) {
        self.release(|limit, _, in_flight, now| limit.expired(in_flight, now));
    }

    fn release(&mut self, learn: impl FnOnce(&mut LimitState, Duration, usize, Instant)) {
        let Some(held) = self.held.take() else {
            return;
        };
        let now = Instant::now();
        let mut state = held.gate.lock();
        let in_flight = state.in_flight;
        learn(&mut state.limit, now - held.admitted, in_flight, now);
        state.in_flight = in_flight.saturating_sub(1);
        held.gate.publish(&state);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let now = Instant::now();
        if self.held.as_ref().is_some_and(|h| now >= h.deadline) {
            self.release(|limit, _, in_flight, now| limit.expired(in_flight, now));
        } else {
            self.release(|_, _, _, _| {});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults of `[admission]`, starting at `initial`.
    fn admission(initial: usize) -> Admission {
        Admission::new(
            Some(LimitSettings {
                initial,
                min: 1,
                max: 4096,
                tolerance: 2.0,
                slack: Duration::from_millis(50),
                backoff: 0.5,
            }),
            ["iris"],
        )
    }

    fn far() -> Deadline {
        Deadline::new(Instant::now(), Duration::from_secs(10))
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_limit_work_is_shed_and_a_finished_permit_frees_its_place() {
        let a = admission(2);
        let first = a.admit("iris", &far()).unwrap();
        let _second = a.admit("iris", &far()).unwrap();
        let shed = a.admit("iris", &far()).err();
        assert!(
            matches!(shed, Some(Shed::Concurrency { limit: 2, retry_after, .. }) if retry_after >= Duration::from_secs(1)),
            "{shed:?}"
        );
        tokio::time::advance(Duration::from_millis(3)).await;
        first.finished();
        assert!(a.admit("iris", &far()).is_ok());
        assert_eq!(a.snapshot()[0].baseline_ms, Some(3.0));
        assert!(a.admit("other", &far()).is_ok(), "no gate, no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_shorter_than_the_models_best_is_refused() {
        let a = admission(4);
        let p = a.admit("iris", &far()).unwrap();
        tokio::time::advance(Duration::from_millis(20)).await;
        p.finished();
        let soon = Deadline::new(Instant::now(), Duration::from_millis(5));
        assert_eq!(
            a.admit("iris", &soon).err(),
            Some(Shed::Deadline {
                left_ms: 5,
                best_ms: 20
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_permit_teaches_nothing() {
        let a = admission(4);
        drop(a.admit("iris", &far()).unwrap());
        assert_eq!(a.snapshot()[0].baseline_ms, None);
        assert_eq!(a.snapshot()[0].in_flight, 0);
        let off = Admission::new(None, ["iris"]);
        assert!(off.snapshot().is_empty());
        assert!(off.admit("iris", &far()).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_s(Duration::ZERO), 1);
        assert_eq!(retry_after_s(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_s(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_s(Duration::from_millis(2001)), 3);
    }
}
