//! The `[batch]` section: dynamic batching of distinct requests for one model.

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::batch::BatchSettings;
use crate::config::check::Checks;

/// Dynamic batching: distinct requests for one model run together in one forward pass.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSection {
    /// Most rows in one forward pass (image models batch up to `image.max_batch_size`
    /// instead, chosen for their device); 1 turns batching off for every model.
    pub max_size: usize,
    /// Milliseconds a request waits for company while every compute thread is busy (a
    /// request never waits while one is idle).
    pub max_wait_ms: u64,
    /// Requests waiting to be batched; more answer 503 with Retry-After.
    pub queue_capacity: usize,
}

impl Default for BatchSection {
    fn default() -> Self {
        Self {
            max_size: 32,
            max_wait_ms: 2,
            queue_capacity: 4096,
        }
    }
}

impl BatchSection {
    /// The batcher's knobs, with `max_in_flight` batches computed at once (one per
    /// compute thread).
    pub fn settings(&self, max_in_flight: usize) -> BatchSettings {
        BatchSettings {
            max_size: self.max_size,
            max_wait: Duration::from_millis(self.max_wait_ms),
            max_in_flight,
            queue_capacity: self.queue_capacity,
        }
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            (1..=4096).contains(&self.max_size),
            "batch.max_size",
            "must be between 1 and 4096",
        );
        checks.check(
            self.max_wait_ms <= 1000,
            "batch.max_wait_ms",
            "must be at most 1000",
        );
        checks.check(
            self.queue_capacity >= 1,
            "batch.queue_capacity",
            "must be at least 1",
        );
    }
}
