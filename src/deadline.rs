//! Request deadlines: the time a client gives its request (`X-Request-Timeout: 250ms`, or
//! gRPC's `grpc-timeout: 250m`), capped by `admission.max_deadline_ms`, as one instant that
//! travels down the request path. Every stage that holds work checks it: admission, the
//! coalescer's wait, the batcher's queue, batch assembly and the compute queue. Work whose
//! deadline has passed is dropped where it is found, never computed.

use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use crate::metrics::DEADLINE_EXCEEDED_TOTAL;

/// The header a client names its deadline in (`250ms`, `2s`, `1.5s`, `100us`, `1m`).
pub const REQUEST_TIMEOUT_HEADER: &str = "x-request-timeout";
/// gRPC's deadline header: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// When a request's answer is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` after `start` (when the request head arrived).
    pub fn new(start: Instant, budget: Duration) -> Self {
        Self {
            at: start + budget,
            budget,
        }
    }

    /// The instant the answer is due.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The whole time the request was given.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Whether the deadline has passed at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.at
    }
}

/// A deadline header that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{header}: {value:?} is not a timeout; send a number and a unit, as 250ms, 2s or 1.5s")]
pub struct BadTimeout {
    /// The header's name.
    pub header: &'static str,
    /// What it said (cut to 64 characters).
    pub value: String,
}

/// The time the request asks for, if it asks (`X-Request-Timeout` first, then
/// `grpc-timeout`), not yet capped.
pub fn requested(headers: &HeaderMap) -> Result<Option<Duration>, BadTimeout> {
    for (header, parse) in [
        (
            REQUEST_TIMEOUT_HEADER,
            parse_timeout as fn(&str) -> Option<Duration>,
        ),
        (GRPC_TIMEOUT_HEADER, parse_grpc_timeout),
    ] {
        if let Some(value) = headers.get(header) {
            let text = value.to_str().unwrap_or_default();
            return parse(text).map(Some).ok_or_else(|| BadTimeout {
                header,
                value: String::from_utf8_lossy(value.as_bytes())
                    .chars()
                    .take(64)
                    .collect(),
            });
        }
    }
    Ok(None)
}

/// The budget a request gets: what it asks for, cut to `max`; `default` when it asks none.
pub fn budget(asked: Option<Duration>, default: Duration, max: Duration) -> Duration {
    asked.unwrap_or(default).min(max)
}

/// What a request's deadline is made of.
#[derive(Debug, Clone, Copy)]
pub struct DeadlinePolicy {
    /// The budget of a request that asks none (`server.request_timeout_ms`).
    pub default: Duration,
    /// The longest a request may ask for (`admission.max_deadline_ms`).
    pub max: Duration,
}

impl DeadlinePolicy {
    /// The deadline of a request whose head arrived at `start` with `headers`.
    pub fn for_request(&self, headers: &HeaderMap, start: Instant) -> Result<Deadline, BadTimeout> {
        let asked = requested(headers)?;
        Ok(Deadline::new(start, budget(asked, self.default, self.max)))
    }

    /// The deadline of a request that asks none.
    pub fn default_for(&self, start: Instant) -> Deadline {
        Deadline::new(start, self.default.min(self.max))
    }
}

/// `250ms`, `2s`, `1.5s`, `100us`, `1m`, `0.5h`: a decimal number and a unit.
pub fn parse_timeout(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    if number.is_empty() || number.len() > 20 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    // A finite ask too long for a Duration is simply long: the cap cuts it.
    Duration::try_from_secs_f64(seconds)
        .ok()
        .or_else(|| seconds.is_finite().then_some(Duration::MAX))
}

/// gRPC's form (PROTOCOL-HTTP2.md, "Timeout"): 1 to 8 ASCII digits and one unit letter.
pub fn parse_grpc_timeout(s: &str) -> Option<Duration> {
    let (digits, unit) = s.split_at_checked(s.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Where on the request path a deadline was found to have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before any work began (the body took the budget, or the budget was zero).
    Admission,
    /// While the request waited for its answer (its own flight, or one it coalesced onto).
    Waiting,
    /// In the batcher's queue: the row was dropped before any batch took it.
    BatchQueue,
    /// Waiting for a compute thread: the whole batch was dropped before its forward pass.
    ComputeQueue,
}

impl Stage {
    /// The `stage` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admission => "admission",
            Self::Waiting => "waiting",
            Self::BatchQueue => "batch_queue",
            Self::ComputeQueue => "compute_queue",
        }
    }

    /// Counts one expiry here in `infergate_deadline_exceeded_total`.
    pub fn count(self) {
        metrics::counter!(DEADLINE_EXCEEDED_TOTAL, "stage" => self.as_str()).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn request_timeout_forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse_timeout("250ms"), Some(ms(250)));
        assert_eq!(parse_timeout(" 2s "), Some(ms(2000)));
        assert_eq!(parse_timeout("1.5s"), Some(ms(1500)));
        assert_eq!(parse_timeout("100us"), Some(Duration::from_micros(100)));
        assert_eq!(parse_timeout("1m"), Some(ms(60_000)));
        assert_eq!(parse_timeout("0ms"), Some(Duration::ZERO));
        for bad in ["", "ms", "250", "-1s", "1e3ms", "2 days", "1.2.3s", "NaNs"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
        // Absurdly long asks parse (and are cut to the cap), never overflow.
        assert_eq!(parse_timeout("99999999999999999999h"), Some(Duration::MAX));
    }

    #[test]
    fn grpc_timeout_forms() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "10x", "1.5S", "-1S", "10ms"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_header_is_read_and_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(requested(&h), Ok(None));
        h.insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static("100m"));
        assert_eq!(requested(&h), Ok(Some(Duration::from_millis(100))));
        h.insert(REQUEST_TIMEOUT_HEADER, HeaderValue::from_static("40ms"));
        assert_eq!(
            requested(&h),
            Ok(Some(Duration::from_millis(40))),
            "ours first"
        );
        h.insert(REQUEST_TIMEOUT_HEADER, HeaderValue::from_static("soon"));
        assert_eq!(
            requested(&h).map_err(|e| e.header),
            Err(REQUEST_TIMEOUT_HEADER)
        );
        let (default, max) = (Duration::from_secs(30), Duration::from_secs(10));
        assert_eq!(budget(None, default, max), max);
        assert_eq!(budget(Some(Duration::from_secs(60)), default, max), max);
        assert_eq!(
            budget(Some(Duration::from_millis(5)), default, max),
            Duration::from_millis(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_expires_at_its_instant() {
        let d = Deadline::new(Instant::now(), Duration::from_millis(10));
        assert!(!d.expired(Instant::now()));
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(d.expired(Instant::now()));
    }
}
