//! In-process counters behind `/stats`: predictions served, in the last hour, and their
//! average confidence. Counts live in memory while the prediction log is disabled. The
//! console's last half minute is [`recent`]'s.

pub mod recent;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::{Duration, Instant};

use crate::stats::recent::{Recent, RecentReading};

const BUCKET: Duration = Duration::from_secs(60);
const BUCKETS: usize = 60;

/// Prediction counters; shared by every thread.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    total: AtomicU64,
    /// Sum of confidences in millionths, so it can be an atomic integer.
    confidence_micros: AtomicU64,
    /// Predictions that had a confidence (a regressor's value has none).
    with_confidence: AtomicU64,
    /// The last hour by minute, and the last half minute's latencies (the console's):
    /// one lock for both, taken once per prediction.
    recent: Mutex<Windows>,
    /// Answers by where they came from, indexed by [`Source`].
    sources: [AtomicU64; SOURCES],
    /// Forward passes run by the batcher, the rows they carried, and the largest.
    batches: AtomicU64,
    batched_rows: AtomicU64,
    largest_batch: AtomicU64,
}

/// Where an answer came from, for the cache counters of `/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The in-process cache.
    L1 = 0,
    /// Redis.
    L2 = 1,
    /// Computed for this request.
    Computed = 2,
    /// Computed by an identical concurrent request.
    Coalesced = 3,
    /// Computed because the client asked to bypass the cache.
    Bypass = 4,
}

const SOURCES: usize = 5;

/// What [`Stats::recent`] holds.
#[derive(Debug)]
struct Windows {
    hour: Window,
    last_seconds: Recent,
}

/// Per-minute counts over the last hour; a ring indexed by minute since start.
#[derive(Debug)]
struct Window {
    minutes: [u64; BUCKETS],
    /// Minute (since start) that each slot holds.
    stamp: [u64; BUCKETS],
}

/// A consistent reading of the counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub total_predictions: u64,
    pub predictions_last_hour: u64,
    /// Mean confidence of every prediction so far that has one (a regressor's value has
    /// none); 0 when there is none.
    pub average_confidence: f64,
    pub uptime_s: u64,
    /// Answers from L1, L2, computed, coalesced, bypassed (in [`Source`] order).
    pub sources: [u64; SOURCES],
    /// Forward passes run for requests (warm-up excluded).
    pub batches: u64,
    /// Rows those passes carried.
    pub batched_rows: u64,
    /// The most rows one pass carried.
    pub largest_batch: u64,
}

impl Snapshot {
    /// Answers served from a cache tier.
    pub fn cache_hits(&self) -> u64 {
        self.sources[Source::L1 as usize] + self.sources[Source::L2 as usize]
    }

    /// Answers that had to be computed (including coalesced and bypassed ones).
    pub fn cache_misses(&self) -> u64 {
        self.sources[Source::Computed as usize]
            + self.sources[Source::Coalesced as usize]
            + self.sources[Source::Bypass as usize]
    }

    /// Hits over lookups, 0..=1 (0 before any prediction).
    pub fn cache_hit_rate(&self) -> f64 {
        let total = self.cache_hits() + self.cache_misses();
        if total == 0 {
            0.0
        } else {
            self.cache_hits() as f64 / total as f64
        }
    }

    /// Answers from one source.
    pub fn from_source(&self, source: Source) -> u64 {
        self.sources[source as usize]
    }
}

impl Stats {
    /// Counters starting now at zero.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            total: AtomicU64::new(0),
            confidence_micros: AtomicU64::new(0),
            with_confidence: AtomicU64::new(0),
            recent: Mutex::new(Windows {
                hour: Window {
                    minutes: [0; BUCKETS],
                    stamp: [u64::MAX; BUCKETS],
                },
                last_seconds: Recent::default(),
            }),
            sources: Default::default(),
            batches: AtomicU64::new(0),
            batched_rows: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
        }
    }

    /// Counts one prediction with its confidence (0..=1; none for a regressor's value),
    /// where it came from, and how long its request took until the answer was ready.
    pub fn record_prediction(&self, confidence: Option<f32>, source: Source, latency: Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.sources[source as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(confidence) = confidence {
            let micros = (f64::from(confidence.clamp(0.0, 1.0)) * 1e6).round() as u64;
            self.confidence_micros.fetch_add(micros, Ordering::Relaxed);
            self.with_confidence.fetch_add(1, Ordering::Relaxed);
        }
        let since_start = self.started.elapsed();
        let minute = minute_of(since_start);
        let slot = (minute % BUCKETS as u64) as usize;
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let w = &mut recent.hour;
        if w.stamp[slot] != minute {
            w.stamp[slot] = minute;
            w.minutes[slot] = 0;
        }
        w.minutes[slot] += 1;
        let cached = matches!(source, Source::L1 | Source::L2);
        recent.last_seconds.record(since_start, latency, cached);
    }

    /// The last half minute's predictions.
    pub fn recent(&self) -> RecentReading {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_seconds
            .reading(self.started.elapsed())
    }

    /// Counts one forward pass of `rows` rows.
    pub fn record_batch(&self, rows: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.largest_batch.fetch_max(rows as u64, Ordering::Relaxed);
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> Snapshot {
        let total = self.total.load(Ordering::Relaxed);
        let micros = self.confidence_micros.load(Ordering::Relaxed);
        let with_confidence = self.with_confidence.load(Ordering::Relaxed);
        let now = minute_of(self.started.elapsed());
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let w = &recent.hour;
        let last_hour = (0..BUCKETS)
            .filter(|&i| w.stamp[i] != u64::MAX && now - w.stamp[i] < BUCKETS as u64)
            .map(|i| w.minutes[i])
            .sum();
        Snapshot {
            total_predictions: total,
            predictions_last_hour: last_hour,
            average_confidence: if with_confidence == 0 {
                0.0
            } else {
                micros as f64 / 1e6 / with_confidence as f64
            },
            uptime_s: self.started.elapsed().as_secs(),
            sources: std::array::from_fn(|i| self.sources[i].load(Ordering::Relaxed)),
            batches: self.batches.load(Ordering::Relaxed),
            batched_rows: self.batched_rows.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }
}

/// The minute (since start) `since_start` falls in.
fn minute_of(since_start: Duration) -> u64 {
    since_start.as_secs() / BUCKET.as_secs()
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn last_hour_forgets_old_minutes() {
        let stats = Stats::new();
        stats.record_prediction(Some(0.5), Source::Computed, Duration::from_millis(1));
        tokio::time::advance(Duration::from_secs(30 * 60)).await;
        stats.record_prediction(Some(1.0), Source::Computed, Duration::from_millis(1));
        stats.record_prediction(Some(1.0), Source::Computed, Duration::from_millis(1));
        // A regressor's value counts as a prediction, not in the mean confidence.
        stats.record_prediction(None, Source::Computed, Duration::from_millis(1));
        let s = stats.snapshot();
        assert_eq!(s.total_predictions, 4);
        assert_eq!(s.predictions_last_hour, 4);
        assert!((s.average_confidence - 2.5 / 3.0).abs() < 1e-6);
        tokio::time::advance(Duration::from_secs(31 * 60)).await;
        let s = stats.snapshot();
        assert_eq!(s.predictions_last_hour, 3);
        tokio::time::advance(Duration::from_secs(60 * 60)).await;
        assert_eq!(stats.snapshot().predictions_last_hour, 0);
        assert_eq!(stats.snapshot().total_predictions, 4);
    }
}
