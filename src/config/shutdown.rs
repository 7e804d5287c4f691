//! The `[shutdown]` section: how long a drain may take, and how long a silent keep-alive
//! connection is kept once it has begun.

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;

/// Graceful shutdown.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSection {
    /// Milliseconds in-flight requests get to finish after SIGTERM/SIGINT; a second signal
    /// exits at once.
    pub drain_timeout_ms: u64,
    /// Milliseconds a silent HTTP/1.1 keep-alive connection is kept once the drain has
    /// started, so a request already on its way gets its answer (with
    /// `Connection: close`). Less than `drain_timeout_ms`.
    pub linger_ms: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 30_000,
            linger_ms: 1000,
        }
    }
}

impl ShutdownSection {
    /// The drain deadline.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }

    /// How long a keep-alive connection may stay silent once the drain has started.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// Checks the two against each other.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.drain_timeout_ms >= 1,
            "shutdown.drain_timeout_ms",
            "must be at least 1 millisecond",
        );
        checks.check(
            self.linger_ms < self.drain_timeout_ms,
            "shutdown.linger_ms",
            "must be less than shutdown.drain_timeout_ms",
        );
    }
}
