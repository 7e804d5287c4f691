//! The last half minute of predictions, for the console: how many, how many from a cache,
//! and their latency percentiles. A ring of six 5-second slots, each with a histogram of
//! latencies in buckets an eighth of a power of two wide (under 5 % apart), so a reading
//! costs a pass over a few kilobytes and a record one increment, whatever the traffic.

use std::time::Duration;

/// One slot's span.
pub const SLOT: Duration = Duration::from_secs(5);
/// Slots in the ring: the window is `SLOTS × SLOT`, the current slot still filling.
pub const SLOTS: usize = 6;
/// Buckets per power of two.
const PER_OCTAVE: f64 = 8.0;
/// Buckets: up to 2^32 µs (over an hour), far past any deadline.
const BUCKETS: usize = 256;

/// The ring. Slot `i` holds the predictions of 5-second period `stamp[i]` (periods counted
/// from the process's start).
#[derive(Debug, Clone)]
pub struct Recent {
    slots: Vec<Slot>,
}

#[derive(Debug, Clone)]
struct Slot {
    /// The period this slot holds; `None` before its first.
    period: Option<u64>,
    predictions: u64,
    cached: u64,
    latency: [u32; BUCKETS],
}

impl Slot {
    fn empty() -> Self {
        Self {
            period: None,
            predictions: 0,
            cached: 0,
            latency: [0; BUCKETS],
        }
    }
}

/// What the window held at a reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentReading {
    /// The span the window covers now: up to `SLOTS × SLOT`, less while the process is
    /// younger.
    pub span: Duration,
    /// Predictions answered in it.
    pub predictions: u64,
    /// Of those, answered from a cache tier.
    pub cached: u64,
    /// Latency percentiles (50th, 90th, 99th); `None` without a prediction.
    pub latency: Option<[Duration; 3]>,
}

impl Default for Recent {
    fn default() -> Self {
        Self {
            slots: vec![Slot::empty(); SLOTS],
        }
    }
}

impl Recent {
    /// Counts one prediction answered `since_start` after the process started, in
    /// `latency`, from a cache or not.
    pub fn record(&mut self, since_start: Duration, latency: Duration, cached: bool) {
        let period = period_of(since_start);
        let slot = &mut self.slots[(period % SLOTS as u64) as usize];
        if slot.period != Some(period) {
            *slot = Slot::empty();
            slot.period = Some(period);
        }
        slot.predictions += 1;
        slot.cached += u64::from(cached);
        let bucket = &mut slot.latency[bucket_of(latency)];
        *bucket = bucket.saturating_add(1);
    }

    /// The window `since_start` after the process started.
    pub fn reading(&self, since_start: Duration) -> RecentReading {
        let now = period_of(since_start);
        let live: Vec<&Slot> = self
            .slots
            .iter()
            .filter(|s| s.period.is_some_and(|p| p <= now && now - p < SLOTS as u64))
            .collect();
        let predictions = live.iter().map(|s| s.predictions).sum();
        let cached = live.iter().map(|s| s.cached).sum();
        let mut histogram = [0u64; BUCKETS];
        for slot in &live {
            for (sum, n) in histogram.iter_mut().zip(slot.latency) {
                *sum += u64::from(n);
            }
        }
        let oldest = now.saturating_sub(SLOTS as u64 - 1);
        let span = since_start.saturating_sub(SLOT * oldest as u32);
        RecentReading {
            span,
            predictions,
            cached,
            latency: (predictions > 0)
                .then(|| [0.5, 0.9, 0.99].map(|q| percentile(&histogram, predictions, q))),
        }
    }
}

fn period_of(since_start: Duration) -> u64 {
    since_start.as_secs() / SLOT.as_secs()
}

/// The bucket of a latency: `floor(8 × log2(µs))`, 0 below 1 µs.
fn bucket_of(latency: Duration) -> usize {
    let micros = latency.as_secs_f64() * 1e6;
    if micros < 1.0 {
        return 0;
    }
    ((micros.log2() * PER_OCTAVE) as usize).min(BUCKETS - 1)
}

/// The middle (geometric) of a bucket.
fn bucket_middle(bucket: usize) -> Duration {
    Duration::from_secs_f64(((bucket as f64 + 0.5) / PER_OCTAVE).exp2() / 1e6)
}

/// The `q` quantile of `total` latencies counted in `histogram`: the middle of the bucket
/// that holds the one ranked `ceil(q × total)`.
fn percentile(histogram: &[u64; BUCKETS], total: u64, q: f64) -> Duration {
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (bucket, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return bucket_middle(bucket);
        }
    }
    bucket_middle(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn close(got: Duration, want: Duration) -> bool {
        let ratio = got.as_secs_f64() / want.as_secs_f64();
        (0.95..=1.05).contains(&ratio)
    }

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let mut r = Recent::default();
        let at = Duration::from_secs(12);
        // 1 ms to 100 ms, one each: p50 is 50 ms, p90 90 ms, p99 99 ms.
        for ms in 1..=100u32 {
            r.record(at, MS * ms, ms % 4 == 0);
        }
        let reading = r.reading(at);
        assert_eq!(reading.predictions, 100);
        assert_eq!(reading.cached, 25);
        let [p50, p90, p99] = reading.latency.unwrap();
        assert!(close(p50, MS * 50), "{p50:?}");
        assert!(close(p90, MS * 90), "{p90:?}");
        assert!(close(p99, MS * 99), "{p99:?}");
    }

    #[test]
    fn the_window_forgets_what_is_older_than_half_a_minute() {
        let mut r = Recent::default();
        r.record(Duration::from_secs(1), MS, false);
        r.record(Duration::from_secs(20), MS * 10, true);
        let reading = r.reading(Duration::from_secs(21));
        assert_eq!(reading.predictions, 2);
        // The window spans the process's 21 s so far.
        assert_eq!(reading.span, Duration::from_secs(21));
        // Period 0 (0–5 s) has left the window by 30 s; period 4 (20–25 s) has not.
        let later = r.reading(Duration::from_secs(31));
        assert_eq!((later.predictions, later.cached), (1, 1));
        assert_eq!(later.span, Duration::from_secs(26));
        // A slot reused by a later period starts from zero.
        r.record(Duration::from_secs(31), MS, false);
        assert_eq!(r.reading(Duration::from_secs(31)).predictions, 2);
        assert_eq!(r.reading(Duration::from_secs(60)).latency, None);
    }

    #[test]
    fn extreme_latencies_land_in_the_end_buckets() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert_eq!(bucket_of(Duration::from_secs(100_000)), BUCKETS - 1);
    }
}
