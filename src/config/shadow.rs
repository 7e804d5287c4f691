//! The `[shadow]` section: the bounds of the runner that mirrors a share of a model's
//! requests to a candidate version (a `model.toml`'s `[shadow]`).

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::shadow::ShadowSettings;

/// The shadow runner: mirrored requests are computed by the candidate version off the
/// response path, on the runner's own thread; past these bounds a request is not mirrored
/// (its log row is written at once, without a comparison).
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowSection {
    /// Mirrored requests waiting for the runner; more are not mirrored.
    pub queue_capacity: usize,
    /// Mirrored requests computed at once; more are not mirrored.
    pub max_in_flight: usize,
    /// Milliseconds a mirrored computation may take before it is given up.
    pub timeout_ms: u64,
}

impl Default for ShadowSection {
    fn default() -> Self {
        Self {
            queue_capacity: 1_024,
            max_in_flight: 32,
            timeout_ms: 5_000,
        }
    }
}

impl ShadowSection {
    /// The runner's bounds.
    pub fn settings(&self) -> ShadowSettings {
        ShadowSettings {
            queue_capacity: self.queue_capacity,
            max_in_flight: self.max_in_flight,
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }

    /// Checks the section.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            (1..=1_000_000).contains(&self.queue_capacity),
            "shadow.queue_capacity",
            "must be between 1 and 1000000",
        );
        checks.check(
            (1..=100_000).contains(&self.max_in_flight),
            "shadow.max_in_flight",
            "must be between 1 and 100000",
        );
        checks.check(
            (1..=600_000).contains(&self.timeout_ms),
            "shadow.timeout_ms",
            "must be between 1 and 600000",
        );
    }
}
