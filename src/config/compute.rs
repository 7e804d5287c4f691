//! The `[compute]` section: the threads that run models, and the queue in front of them.

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::config::server::available_cores;
use crate::infer::worker::PoolSettings;

/// The compute threads that run models.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeSection {
    /// Compute threads that run models (never the I/O threads); 0 = half the available
    /// cores, at least 1.
    pub threads: usize,
    /// Threads one forward pass may use inside candle and tract (rayon's pool, shared by
    /// the compute threads); 1 is fastest for small tabular models. More shortens a big
    /// network's pass where cores would otherwise sit idle.
    pub intra_op_threads: usize,
    /// Inference jobs allowed to wait for a compute thread; a full queue answers 503 with
    /// Retry-After.
    pub queue_capacity: usize,
}

impl Default for ComputeSection {
    fn default() -> Self {
        Self {
            threads: 0,
            intra_op_threads: 1,
            queue_capacity: 1024,
        }
    }
}

impl ComputeSection {
    /// `threads`, with 0 resolved to half the available cores (at least one).
    pub fn resolved_threads(&self) -> usize {
        match self.threads {
            0 => (available_cores() / 2).max(1),
            n => n,
        }
    }

    /// The compute pool: its threads and queue.
    pub fn pool_settings(&self) -> PoolSettings {
        PoolSettings {
            threads: self.resolved_threads(),
            queue_capacity: self.queue_capacity,
        }
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.threads <= 1024,
            "compute.threads",
            "must be at most 1024",
        );
        checks.check(
            (1..=1024).contains(&self.intra_op_threads),
            "compute.intra_op_threads",
            "must be between 1 and 1024",
        );
        checks.check(
            self.queue_capacity >= 1,
            "compute.queue_capacity",
            "must be at least 1",
        );
    }
}
