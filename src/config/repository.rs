//! The `[repository]` section: the model repository, models and versions loaded from a
//! directory and reloaded on change.

use std::path::PathBuf;
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;

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
}

impl Default for RepositorySection {
    fn default() -> Self {
        Self {
            path: None,
            poll_interval_ms: 2_000,
        }
    }
}

impl RepositorySection {
    /// How often the directory is looked at; `None` when never (0).
    pub fn poll_interval(&self) -> Option<Duration> {
        (self.poll_interval_ms > 0).then(|| Duration::from_millis(self.poll_interval_ms))
    }

    /// Checks the section.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.poll_interval_ms == 0 || (100..=3_600_000).contains(&self.poll_interval_ms),
            "repository.poll_interval_ms",
            "must be 0 (no polling) or between 100 and 3600000",
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
