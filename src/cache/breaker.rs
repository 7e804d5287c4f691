//! A circuit breaker for the L2: after `threshold` consecutive failures the circuit opens
//! and lookups skip Redis entirely (an outage costs nothing per request); after `cooldown`
//! one probe is let through, and its outcome closes or re-opens the circuit.
//!
//! Pure state driven by explicit `now`s; the caller logs and counts the transitions it
//! returns.

use std::time::Duration;

use tokio::time::Instant;

/// Where the circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Redis is used; `failures` consecutive failures so far.
    Closed { failures: u32 },
    /// Redis is skipped until `until`.
    Open { until: Instant },
    /// One probe is in flight; everything else skips Redis.
    HalfOpen,
}

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The circuit opened: Redis is considered down.
    Opened,
    /// The circuit closed again: Redis answers.
    Closed,
}

/// Breaker state.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: Circuit,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Circuit::Closed { failures: 0 },
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// Where the circuit stands.
    pub fn state(&self) -> Circuit {
        self.state
    }

    /// Whether the circuit is open or probing (Redis considered down).
    pub fn is_down(&self) -> bool {
        !matches!(self.state, Circuit::Closed { .. })
    }

    /// Whether a call may go to Redis now. After the cooldown, the first caller gets `true`
    /// and becomes the probe.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            Circuit::Closed { .. } => true,
            Circuit::Open { until } if now >= until => {
                self.state = Circuit::HalfOpen;
                true
            }
            Circuit::Open { .. } | Circuit::HalfOpen => false,
        }
    }

    /// Records a call that worked.
    pub fn success(&mut self) -> Option<Transition> {
        let was_down = self.is_down();
        self.state = Circuit::Closed { failures: 0 };
        was_down.then_some(Transition::Closed)
    }

    /// Records a call that failed at `now`.
    pub fn failure(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            Circuit::Closed { failures } if failures + 1 < self.threshold => {
                self.state = Circuit::Closed {
                    failures: failures + 1,
                };
                None
            }
            Circuit::Closed { .. } => {
                self.state = Circuit::Open {
                    until: now + self.cooldown,
                };
                Some(Transition::Opened)
            }
            // A failed probe (or a late failure while open) re-arms the cooldown quietly.
            Circuit::HalfOpen | Circuit::Open { .. } => {
                self.state = Circuit::Open {
                    until: now + self.cooldown,
                };
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_probes_after_cooldown_and_closes_on_success() {
        let mut b = Breaker::new(3, Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(b.failure(now), None);
        assert_eq!(b.failure(now), None);
        assert!(b.allow(now));
        assert_eq!(b.failure(now), Some(Transition::Opened));
        assert!(!b.allow(now) && b.is_down());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!b.allow(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.allow(Instant::now()), "the probe");
        assert!(!b.allow(Instant::now()), "only one probe at a time");
        assert_eq!(
            b.failure(Instant::now()),
            None,
            "failed probe: open again, no new log"
        );
        assert!(!b.allow(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.allow(Instant::now()));
        assert_eq!(b.success(), Some(Transition::Closed));
        assert_eq!(b.success(), None);
        assert_eq!(b.state(), Circuit::Closed { failures: 0 });
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut b = Breaker::new(2, Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(b.failure(now), None);
        assert_eq!(b.success(), None);
        assert_eq!(b.failure(now), None);
        assert_eq!(b.failure(now), Some(Transition::Opened));
    }
}
