//! The adaptive concurrency limit of one model, as a pure state driven by explicit `now`s:
//! additive increase while work finishes near the model's baseline latency (its recent
//! best), and when work finishes much slower (it queued), a decrease to what Little's law
//! says fits: the work in flight finishes at `in_flight / latency` a second, so
//! `in_flight × tolerance × baseline / latency` pieces would finish within the target
//! (tolerance × baseline). One decrease never goes below `backoff` × the work in flight,
//! so a hiccup cannot collapse the limit; decreases come at most once per target latency,
//! so a limit far above what the model can take comes down in a few of them. As TCP's
//! AIMD and Netflix's gradient concurrency limit do.

use std::time::Duration;

use tokio::time::Instant;

/// The knobs of one limit.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Where the limit starts.
    pub initial: usize,
    /// Lowest limit.
    pub min: usize,
    /// Highest limit.
    pub max: usize,
    /// Latency above baseline × this (and above baseline + `slack`) is queueing.
    pub tolerance: f64,
    /// Latency within this of the baseline is never queueing.
    pub slack: Duration,
    /// One shrink never takes the limit below this share of the work in flight.
    pub backoff: f64,
}

/// How long the baseline takes to forget an old best, seconds: it moves toward slower
/// samples by the share of this time since the last one, so a model that became slower
/// for good is not read as congested for ever, while under load (many samples a second)
/// it hardly moves. A limit near its right value keeps producing samples at the true best,
/// which pull it straight back down.
const BASELINE_MEMORY_S: f64 = 60.0;
/// Weight of a new sample in the smoothed latency.
const SMOOTHING: f64 = 0.2;

/// One model's limit and what it has learnt of its latency.
#[derive(Debug, Clone)]
pub struct LimitState {
    cfg: LimitSettings,
    limit: f64,
    baseline: Option<Duration>,
    smoothed: Option<Duration>,
    last_sample: Option<Instant>,
    last_shrink: Option<Instant>,
}

impl LimitState {
    /// A limit at `cfg.initial`, with nothing learnt yet.
    pub fn new(cfg: LimitSettings) -> Self {
        let min = cfg.min.max(1);
        let max = cfg.max.max(min);
        Self {
            cfg: LimitSettings { min, max, ..cfg },
            limit: cfg.initial.clamp(min, max) as f64,
            baseline: None,
            smoothed: None,
            last_sample: None,
            last_shrink: None,
        }
    }

    /// Work admitted at once now.
    pub fn limit(&self) -> usize {
        (self.limit as usize).clamp(self.cfg.min, self.cfg.max)
    }

    /// The best latency seen lately; `None` before the first sample.
    pub fn baseline(&self) -> Option<Duration> {
        self.baseline
    }

    /// The latency of recent work, smoothed; `None` before the first sample.
    pub fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }

    /// The latency above which work counts as queued: tolerance × baseline, and at least
    /// baseline + slack.
    fn target(&self, baseline: Duration) -> Duration {
        baseline
            .mul_f64(self.cfg.tolerance)
            .max(baseline + self.cfg.slack)
    }

    /// Learns from one finished piece of work that took `latency`, with `in_flight`
    /// pieces (itself included) admitted at the time.
    pub fn finished(&mut self, latency: Duration, in_flight: usize, now: Instant) {
        let since = self.last_sample.map_or(Duration::ZERO, |at| now - at);
        self.last_sample = Some(now);
        let baseline = match self.baseline {
            Some(b) if latency >= b => {
                let forget = (since.as_secs_f64() / BASELINE_MEMORY_S).min(1.0);
                b + (latency - b).mul_f64(forget)
            }
            _ => latency,
        };
        self.baseline = Some(baseline);
        let smoothed = match self.smoothed {
            None => latency,
            Some(s) => s.mul_f64(1.0 - SMOOTHING) + latency.mul_f64(SMOOTHING),
        };
        self.smoothed = Some(smoothed);
        // Judged on the smoothed latency: one slow piece of work (a busy machine's
        // hiccup, a burst's tail) is not congestion; a run of them is.
        let target = self.target(baseline);
        if smoothed > target {
            let fits = in_flight as f64 * target.as_secs_f64() / smoothed.as_secs_f64();
            self.shrink(fits, in_flight, target, now);
        } else if in_flight as f64 * 2.0 >= self.limit {
            // Grow only a limit in use: an idle model's limit says nothing of its capacity.
            self.limit = (self.limit + 1.0 / self.limit).min(self.cfg.max as f64);
        }
    }

    /// Learns that a piece of work ran past its deadline (or found a queue full), with
    /// `in_flight` admitted: a sure sign of queueing, whatever the baseline says.
    pub fn expired(&mut self, in_flight: usize, now: Instant) {
        let target = self.baseline.map_or(Duration::ZERO, |b| self.target(b));
        self.shrink(0.0, in_flight, target, now);
    }

    /// Decrease toward `fits`, to no less than `backoff` × `in_flight`, and at most once
    /// per `target`: work admitted before a decrease takes about that long to show its
    /// effect.
    fn shrink(&mut self, fits: f64, in_flight: usize, target: Duration, now: Instant) {
        if self.last_shrink.is_some_and(|at| now < at + target) {
            return;
        }
        self.last_shrink = Some(now);
        let floor = in_flight as f64 * self.cfg.backoff;
        self.limit = fits.max(floor).min(self.limit).max(self.cfg.min as f64);
    }

    /// How long until the work admitted now has drained: the smoothed latency for each
    /// full limit's worth of it, at least `floor`.
    pub fn drain_time(&self, in_flight: usize, floor: Duration) -> Duration {
        let per_round = self.smoothed.unwrap_or(floor);
        let rounds = (in_flight as f64 / self.limit.max(1.0)).max(1.0);
        per_round.mul_f64(rounds).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitSettings {
        LimitSettings {
            initial: 10,
            min: 1,
            max: 100,
            tolerance: 2.0,
            slack: Duration::from_millis(1),
            backoff: 0.5,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_busy_model_answering_at_its_best_grows_its_limit() {
        let mut s = LimitState::new(cfg());
        for _ in 0..100 {
            s.finished(10 * MS, s.limit(), Instant::now());
        }
        assert!(s.limit() > 15, "{}", s.limit());
        let grown = s.limit();
        // An idle model (little in flight) keeps its limit.
        for _ in 0..100 {
            s.finished(10 * MS, 1, Instant::now());
        }
        assert_eq!(s.limit(), grown);
        assert_eq!(s.baseline(), Some(10 * MS));
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_of_slow_work_shrinks_the_limit_once_per_target_latency() {
        let mut s = LimitState::new(cfg());
        s.finished(10 * MS, 10, Instant::now());
        let mut first = None;
        for _ in 0..20 {
            s.finished(30 * MS, 10, Instant::now());
            if s.limit() < 10 && first.is_none() {
                first = Some(s.limit());
            }
        }
        let first = first.expect("a run of work at 3x the baseline shrinks the limit");
        assert!(
            (5..10).contains(&first),
            "to what fits, no less than half of 10: {first}"
        );
        assert_eq!(s.limit(), first, "once per target latency (20 ms)");
        tokio::time::advance(25 * MS).await;
        s.finished(30 * MS, 8, Instant::now());
        assert!(s.limit() < first, "again after it: {}", s.limit());
        for _ in 0..20 {
            tokio::time::advance(25 * MS).await;
            s.finished(30 * MS, 1, Instant::now());
        }
        assert_eq!(s.limit(), 1, "never below min");
    }

    #[tokio::test(start_paused = true)]
    async fn one_shrink_keeps_half_the_work_in_flight() {
        let mut s = LimitState::new(LimitSettings {
            initial: 1000,
            max: 1000,
            ..cfg()
        });
        s.finished(Duration::from_micros(50), 32, Instant::now());
        s.finished(100 * MS, 32, Instant::now());
        assert_eq!(s.limit(), 16, "fits ~0, but half of the 32 in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn queueing_within_the_slack_is_not_congestion() {
        let mut s = LimitState::new(LimitSettings {
            slack: 5 * MS,
            ..cfg()
        });
        s.finished(Duration::from_micros(50), 10, Instant::now());
        for _ in 0..50 {
            s.finished(3 * MS, 10, Instant::now());
        }
        assert!(s.limit() >= 10, "60x the baseline, but within 5 ms of it");
        let before = s.limit();
        for _ in 0..50 {
            s.finished(8 * MS, 10, Instant::now());
        }
        assert!(s.limit() < before, "{}", s.limit());
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiry_shrinks_and_the_drain_time_follows_the_latency() {
        let mut s = LimitState::new(cfg());
        assert_eq!(
            s.drain_time(10, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        s.expired(10, Instant::now());
        assert_eq!(s.limit(), 5, "half the work in flight");
        for _ in 0..20 {
            s.finished(Duration::from_secs(2), 1, Instant::now());
        }
        let drain = s.drain_time(10, Duration::from_secs(1));
        assert!(
            drain > Duration::from_secs(3),
            "two rounds of ~2 s: {drain:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_baseline_forgets_an_old_best_in_time_not_in_samples() {
        let mut s = LimitState::new(cfg());
        s.finished(MS, 1, Instant::now());
        // A thousand slower samples in a moment: the best stays.
        for _ in 0..1000 {
            s.finished(2 * MS, 1, Instant::now());
        }
        assert_eq!(s.baseline(), Some(MS));
        // The same, a second apart: after a minute it is mostly forgotten.
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            s.finished(2 * MS, 1, Instant::now());
        }
        let b = s.baseline().unwrap();
        assert!(b > Duration::from_micros(1500) && b < 2 * MS, "{b:?}");
    }
}
