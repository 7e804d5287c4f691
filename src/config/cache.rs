//! The `[cache]` section: whether answers are cached, for how long, and the bounds of the
//! in-process tier (`[cache.l1]`).

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::cache::l1::L1Settings;
use crate::config::check::Checks;

/// The answer cache, keyed by a hash of (model name, model version, input): a hit skips
/// the model. An in-process LRU (L1), and Redis (L2, `[redis]`) where configured.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// Cache answers at all.
    pub enabled: bool,
    /// Seconds an answer is served from the cache, in either tier (the stack we replace
    /// kept them an hour).
    pub ttl_s: u64,
    /// The in-process tier: entries kept, bytes kept (answers plus about 64 bytes each),
    /// lock shards.
    pub l1: L1Section,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_s: 3600,
            l1: L1Section::default(),
        }
    }
}

/// Bounds of the in-process cache tier.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct L1Section {
    /// Entries kept, across all shards.
    pub max_entries: usize,
    /// Bytes kept (answers plus a fixed per-entry overhead), across all shards.
    pub max_bytes: usize,
    /// Independently locked shards: more shards, less contention.
    pub shards: usize,
}

impl Default for L1Section {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            shards: 16,
        }
    }
}

impl CacheSection {
    /// How long an answer lives.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_s)
    }

    /// The in-process tier's bounds; `None` with the cache off.
    pub fn l1_settings(&self) -> Option<L1Settings> {
        self.enabled.then(|| L1Settings {
            max_entries: self.l1.max_entries,
            max_bytes: self.l1.max_bytes,
            ttl: self.ttl(),
            shards: self.l1.shards,
        })
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(self.ttl_s >= 1, "cache.ttl_s", "must be at least 1 second");
        checks.check(
            self.l1.max_entries >= 1,
            "cache.l1.max_entries",
            "must be at least 1",
        );
        checks.check(
            self.l1.max_bytes >= 1024,
            "cache.l1.max_bytes",
            "must be at least 1024",
        );
        checks.check(
            (1..=256).contains(&self.l1.shards),
            "cache.l1.shards",
            "must be between 1 and 256",
        );
    }
}
