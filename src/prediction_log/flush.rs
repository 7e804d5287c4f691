//! The writer's decisions, as pure state: when a batch is due (size or age), and how long
//! to wait before trying Postgres again (exponential backoff). No I/O; tested with paused
//! tokio time.

use std::time::Duration;

use tokio::time::Instant;

/// Rows gathered for the next write.
#[derive(Debug)]
pub struct Pending<T> {
    rows: Vec<T>,
    oldest: Option<Instant>,
    max_rows: usize,
    max_age: Duration,
}

impl<T> Pending<T> {
    /// A batch is due at `max_rows` rows, or when its oldest row is `max_age` old.
    pub fn new(max_rows: usize, max_age: Duration) -> Self {
        Self {
            rows: Vec::with_capacity(max_rows),
            oldest: None,
            max_rows: max_rows.max(1),
            max_age,
        }
    }

    /// Adds a row that arrived at `now`.
    pub fn push(&mut self, row: T, now: Instant) {
        self.oldest.get_or_insert(now);
        self.rows.push(row);
    }

    /// Rows waiting.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether the batch should be written now.
    pub fn is_due(&self, now: Instant) -> bool {
        self.rows.len() >= self.max_rows || self.oldest.is_some_and(|t| now >= t + self.max_age)
    }

    /// When the batch becomes due by age; `None` while empty.
    pub fn due_at(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.max_age)
    }

    /// Takes up to `max_rows` rows (the oldest), leaving the rest pending.
    pub fn take(&mut self, now: Instant) -> Vec<T> {
        self.take_up_to(self.max_rows, now)
    }

    /// Takes up to `n` rows (the oldest): a writer that fell behind catches up with
    /// larger batches, which COPY writes faster per row.
    pub fn take_up_to(&mut self, n: usize, now: Instant) -> Vec<T> {
        let n = self.rows.len().min(n.max(1));
        let rest = self.rows.split_off(n);
        let batch = std::mem::replace(&mut self.rows, rest);
        // What remains is at most one batch old; count its age from now.
        self.oldest = (!self.rows.is_empty()).then_some(now);
        batch
    }

    /// Takes every row.
    pub fn take_all(&mut self) -> Vec<T> {
        self.oldest = None;
        std::mem::take(&mut self.rows)
    }
}

/// Exponential backoff between attempts to reach Postgres.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// Waits start at `initial` and double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            current: initial,
            retry_at: None,
        }
    }

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// When the next attempt may be made; `None` when it may be made now.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Records a failure at `now`; returns the wait before the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.current;
        self.retry_at = Some(now + wait);
        self.current = (self.current * 2).min(self.max);
        wait
    }

    /// Records a success: the next failure waits `initial` again.
    pub fn succeeded(&mut self) {
        self.current = self.initial;
        self.retry_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_is_due_by_size_or_by_age() {
        let mut p = Pending::new(3, Duration::from_millis(200));
        let t0 = Instant::now();
        assert!(!p.is_due(t0));
        assert_eq!(p.due_at(), None);
        p.push(1, t0);
        tokio::time::advance(Duration::from_millis(150)).await;
        p.push(2, Instant::now());
        assert!(!p.is_due(Instant::now()));
        assert_eq!(p.due_at(), Some(t0 + Duration::from_millis(200)));
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(p.is_due(Instant::now()), "the oldest row is 200 ms old");
        assert_eq!(p.take(Instant::now()), vec![1, 2]);
        assert!(p.is_empty());
        for i in 0..7 {
            p.push(i, Instant::now());
        }
        assert!(p.is_due(Instant::now()), "full");
        assert_eq!(p.take(Instant::now()), vec![0, 1, 2]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.take_up_to(2, Instant::now()), vec![3, 4]);
        assert_eq!(
            p.due_at(),
            Some(Instant::now() + Duration::from_millis(200))
        );
        p.push(7, Instant::now());
        p.push(8, Instant::now());
        assert_eq!(p.take_all(), vec![5, 6, 7, 8]);
        assert_eq!(p.due_at(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let now = Instant::now();
        assert!(b.ready(now));
        assert_eq!(b.failed(now), Duration::from_millis(100));
        assert!(!b.ready(now));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.ready(Instant::now()));
        assert_eq!(b.failed(Instant::now()), Duration::from_millis(200));
        assert_eq!(b.failed(Instant::now()), Duration::from_millis(350));
        assert_eq!(b.failed(Instant::now()), Duration::from_millis(350));
        b.succeeded();
        assert!(b.ready(Instant::now()));
        assert_eq!(b.failed(Instant::now()), Duration::from_millis(100));
    }
}
