//! The `[repository]` section: the model repository, models and versions loaded from a
//! directory and reloaded on change.

use std::path::PathBuf;
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::repository::demand::DemandSettings;
use crate::repository::settings::LoadPolicy;

/// The model repository; off without `path`.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct RepositorySection {
    /// The repository: one directory per model, one per version inside it (whole
    /// numbers), each with `model.safetensors` and `manifest.json` (and an image model's
    /// labels file), e.g. `models/iris/1/`, `models/iris/2/`, and an optional
    /// `models/iris/model.toml` (version policy, traffic split, shadow). Loaded at start
    /// beside the configured and bundled models and reloaded without a restart: on a look
    /// every `poll_interval_ms`, on SIGHUP, and through
    /// `POST /v2/repository/models/{m}/load`. A model that fails to load is reported and
    /// the others serve. Unset: no repository.
    /// Example: `"/models"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Milliseconds between looks at the directory for changes; 0 = only on SIGHUP and
    /// through the repository API.
    pub poll_interval_ms: u64,
    /// When models are loaded, unless their `model.toml` says `load`: `"eager"` (at start
    /// and on every change of their files, never evicted) or `"on_demand"` (listed at
    /// start, loaded by the first request that needs it, evicted when
    /// `memory_budget_bytes` runs short or after the model's `idle_unload_s`).
    pub load: LoadPolicy,
    /// Memory for the versions loaded on demand, bytes, as measured at each load (what the
    /// load allocated and kept); a load that would pass it evicts the versions least worth
    /// keeping first. 0 = no budget.
    pub memory_budget_bytes: u64,
    /// Loads on demand that run at once; more wait their turn.
    pub max_concurrent_loads: usize,
    /// A version loaded on demand is not evicted for memory within this many milliseconds
    /// of its load.
    pub min_resident_ms: u64,
    /// After a load on demand fails, requests are refused at once (503 with
    /// `Retry-After`) for this many milliseconds, doubling with each failure in a row up
    /// to 300 s, unless the version's files change.
    pub load_retry_ms: u64,
}

impl Default for RepositorySection {
    fn default() -> Self {
        Self {
            path: None,
            poll_interval_ms: 2_000,
            load: LoadPolicy::Eager,
            memory_budget_bytes: 0,
            max_concurrent_loads: 2,
            min_resident_ms: 10_000,
            load_retry_ms: 5_000,
        }
    }
}

impl RepositorySection {
    /// How often the directory is looked at; `None` when never (0).
    pub fn poll_interval(&self) -> Option<Duration> {
        (self.poll_interval_ms > 0).then(|| Duration::from_millis(self.poll_interval_ms))
    }

    /// How loads on demand run.
    pub fn demand(&self) -> DemandSettings {
        DemandSettings {
            budget: self.memory_budget_bytes,
            max_concurrent_loads: self.max_concurrent_loads,
            min_resident: Duration::from_millis(self.min_resident_ms),
            retry: Duration::from_millis(self.load_retry_ms),
        }
    }

    /// Checks the section.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.poll_interval_ms == 0 || (100..=3_600_000).contains(&self.poll_interval_ms),
            "repository.poll_interval_ms",
            "must be 0 (no polling) or between 100 and 3600000",
        );
        checks.check(
            (1..=64).contains(&self.max_concurrent_loads),
            "repository.max_concurrent_loads",
            "must be between 1 and 64",
        );
        checks.check(
            self.min_resident_ms <= 3_600_000,
            "repository.min_resident_ms",
            "must be at most 3600000 (an hour)",
        );
        checks.check(
            (1..=300_000).contains(&self.load_retry_ms),
            "repository.load_retry_ms",
            "must be between 1 and 300000",
        );
        if let Some(path) = &self.path {
            checks.check(
                path.is_dir(),
                "repository.path",
                "must be a directory (one subdirectory per model)",
            );
        }
    }
}
