//! Log lines any client can trigger at will: rustls warns once per handshake that sends an
//! IP address as SNI ("Illegal SNI extension: ignoring IP address"), so a scanner or a
//! misconfigured client could write a line per connection. Such warnings are counted
//! (`infergate_tls_client_warnings_total`) and not written; [`NoiseSummary`] writes one line
//! with the count at most once a minute.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::layer::{Context, Layer};

use crate::metrics::TLS_CLIENT_WARNINGS_TOTAL;

/// How often at most a summary line is written.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Warnings held back since start, and the last one's text.
static HELD_BACK: AtomicU64 = AtomicU64::new(0);
static LAST_MESSAGE: Mutex<String> = Mutex::new(String::new());

/// Whether an event is a warning a client triggers: rustls's warnings are about what the
/// peer sent (our own configuration errors reach us as `Err`s, not log lines).
fn is_client_noise(target: &str, level: Level) -> bool {
    level == Level::WARN && (target == "rustls" || target.starts_with("rustls::"))
}

/// The layer that holds client-triggered warnings back from every writer.
pub struct HoldBack;

impl<S: Subscriber> Layer<S> for HoldBack {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        // rustls logs through `log`; tracing-log's events carry the real target only in
        // their normalized metadata.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if !is_client_noise(meta.target(), *meta.level()) {
            return true;
        }
        HELD_BACK.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(TLS_CLIENT_WARNINGS_TOTAL).increment(1);
        let mut message = MessageText(String::new());
        event.record(&mut message);
        *LAST_MESSAGE.lock().unwrap_or_else(|p| p.into_inner()) = message.0;
        false
    }
}

struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// When the held-back warnings get their summary line: at the first check after one
/// arrives, then at most once per interval.
#[derive(Debug)]
pub struct NoiseSummary {
    interval: Duration,
    last_written: Option<Instant>,
    reported: u64,
}

impl NoiseSummary {
    /// A summary written at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_written: None,
            reported: 0,
        }
    }

    /// With `total` warnings held back since start, how many a line written now reports,
    /// if one is due (the caller writes it).
    pub fn due(&mut self, now: Instant, total: u64) -> Option<u64> {
        let new = total.saturating_sub(self.reported);
        if new == 0 || self.last_written.is_some_and(|at| now < at + self.interval) {
            return None;
        }
        self.last_written = Some(now);
        self.reported = total;
        Some(new)
    }

    /// Writes the summary line if one is due.
    pub fn write_if_due(&mut self, now: Instant) {
        if let Some(count) = self.due(now, HELD_BACK.load(Ordering::Relaxed)) {
            let last = LAST_MESSAGE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            tracing::warn!(
                count,
                last = %last,
                "{count} TLS handshake warning(s) triggered by clients since the last report \
                 (counted in infergate_tls_client_warnings_total, reported at most once a minute)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_carrying_the_count() {
        let mut s = NoiseSummary::new(SUMMARY_INTERVAL);
        assert_eq!(s.due(Instant::now(), 0), None, "nothing held back");
        assert_eq!(s.due(Instant::now(), 1), Some(1), "the first one at once");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(s.due(Instant::now(), 500), None, "within the minute");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(s.due(Instant::now(), 1000), Some(999), "the rest, once");
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(s.due(Instant::now(), 1000), None, "nothing new");
        assert_eq!(
            s.due(Instant::now(), 1001),
            Some(1),
            "a quiet spell: at once again"
        );
    }

    #[test]
    fn only_rustls_warnings_are_client_noise() {
        assert!(is_client_noise("rustls::msgs::handshake", Level::WARN));
        assert!(!is_client_noise("rustls::msgs::handshake", Level::ERROR));
        assert!(!is_client_noise("rustls::conn", Level::DEBUG));
        assert!(!is_client_noise("rustlsx", Level::WARN));
        assert!(!is_client_noise("infergate::server", Level::WARN));
    }
}
