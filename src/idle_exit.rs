//! `server.idle_exit_s`: after that long without a request the gateway drains and exits 0,
//! as on SIGTERM. With socket activation the launcher keeps the listening socket, so the
//! next connection waits in its backlog and starts a fresh instance: an idle service costs
//! no memory.
//!
//! Three parts: [`LastRequest`], the stamp every request writes (cheap: the request path
//! pays a relaxed load, and a relaxed store at most once a millisecond); [`IdleState`], the
//! pure decision; [`IdleExit`], the handle the control loop awaits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// When a request last started or ended, anywhere in the process.
#[derive(Debug)]
pub struct LastRequest {
    origin: Instant,
    /// Milliseconds from `origin` to the last stamp.
    millis: AtomicU64,
}

impl LastRequest {
    /// A stamp reading "just now".
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    /// Records request activity at `at`.
    #[inline]
    pub fn stamp(&self, at: Instant) {
        let ms = u64::try_from(at.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX);
        // Stored only when it moves forward: under load the line stays shared between the
        // I/O threads instead of bouncing with a store per request. A racing older stamp
        // can win by a millisecond or so; the idle period is seconds.
        if self.millis.load(Ordering::Relaxed) < ms {
            self.millis.store(ms, Ordering::Relaxed);
        }
    }

    /// The last stamp (millisecond precision).
    pub fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

impl Default for LastRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// What the idle-exit loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do before this instant (when the last request turns `after` old).
    SleepUntil(Instant),
    /// Idle for this long, at least the configured period: drain and exit.
    Exit(Duration),
}

/// The idle-exit decision, pure: driven by explicit instants.
#[derive(Debug, Clone, Copy)]
pub struct IdleState {
    after: Duration,
}

impl IdleState {
    /// Exit after `after` without a request.
    pub fn new(after: Duration) -> Self {
        Self { after }
    }

    /// At `now`, with the last request at `last`: sleep until the period has passed since
    /// `last`, or exit.
    pub fn step(&self, last: Instant, now: Instant) -> Step {
        let idle = now.saturating_duration_since(last);
        if idle >= self.after {
            Step::Exit(idle)
        } else {
            Step::SleepUntil(last + self.after)
        }
    }
}

/// The control loop's handle: resolves once no request has started or ended for the
/// period. A request in flight counts from its start; one running longer than the whole
/// period does not postpone the exit, but the drain that follows lets it finish.
#[derive(Debug)]
pub struct IdleExit<'a> {
    last: &'a LastRequest,
    state: IdleState,
}

impl<'a> IdleExit<'a> {
    /// Watches `last` for `after` of silence.
    pub fn new(last: &'a LastRequest, after: Duration) -> Self {
        Self {
            last,
            state: IdleState::new(after),
        }
    }

    /// Resolves with how long the gateway has been idle, once that is the whole period.
    pub async fn expired(&self) -> Duration {
        loop {
            match self.state.step(self.last.last(), Instant::now()) {
                Step::SleepUntil(at) => tokio::time::sleep_until(at).await,
                Step::Exit(idle) => return idle,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_sleeps_until_the_period_has_passed_since_the_last_request() {
        let state = IdleState::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(
            state.step(t0, t0 + Duration::from_secs(3)),
            Step::SleepUntil(t0 + Duration::from_secs(10))
        );
        assert_eq!(
            state.step(t0, t0 + Duration::from_secs(12)),
            Step::Exit(Duration::from_secs(12))
        );
        // A clock reading before the stamp (a request stamped after `now` was read).
        assert_eq!(
            state.step(t0 + Duration::from_secs(1), t0),
            Step::SleepUntil(t0 + Duration::from_secs(11))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stamps_only_move_forward() {
        let last = LastRequest::new();
        let t0 = Instant::now();
        last.stamp(t0 + Duration::from_secs(5));
        last.stamp(t0 + Duration::from_secs(2));
        assert_eq!(last.last(), t0 + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_period_without_requests() {
        let last = LastRequest::new();
        let started = Instant::now();
        let idle = IdleExit::new(&last, Duration::from_secs(30))
            .expired()
            .await;
        assert_eq!(idle, Duration::from_secs(30));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_postpones_the_exit() {
        let last = LastRequest::new();
        let started = Instant::now();
        let watch = IdleExit::new(&last, Duration::from_secs(30));
        let expired = watch.expired();
        tokio::pin!(expired);
        // Requests every 20 s for a minute keep it alive.
        for _ in 0..3 {
            assert!(
                tokio::time::timeout(Duration::from_secs(20), expired.as_mut())
                    .await
                    .is_err()
            );
            last.stamp(Instant::now());
        }
        let idle = expired.await;
        assert_eq!(idle, Duration::from_secs(30));
        assert_eq!(started.elapsed(), Duration::from_secs(90));
    }
}
