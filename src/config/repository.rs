//! The `[repository]` section (the model repository: models and versions loaded from a
//! directory and reloaded on change) and the `[shadow]` section (the runner that mirrors
//! a share of a model's requests to a candidate version).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The model repository; off without `path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositoryConfig {
    /// `models/`: one directory per model, one per version inside it
    /// (`<name>/<version>/{model.safetensors, manifest.json}`), and an optional
    /// `<name>/model.toml` (version policy, traffic split, shadow). `None`: no repository,
    /// only the configured and bundled models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Milliseconds between looks at the directory for changes; 0 = only on SIGHUP and
    /// through the repository API.
    pub poll_interval_ms: u64,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        Self {
            path: None,
            poll_interval_ms: 2_000,
        }
    }
}

impl RepositoryConfig {
    /// Checks the section; `check(ok, key, message)` records a failure.
    pub fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            self.poll_interval_ms == 0 || (100..=3_600_000).contains(&self.poll_interval_ms),
            "repository.poll_interval_ms",
            "must be 0 (no polling) or between 100 and 3600000",
        );
        if let Some(path) = &self.path {
            check(
                path.is_dir(),
                "repository.path",
                "must be a directory (one subdirectory per model)",
            );
        }
    }
}

/// The shadow runner: mirrored requests are computed off the response path, on its own
/// thread, within these bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    /// Mirrored requests waiting for the runner; more are not mirrored (their log row is
    /// written at once, without a comparison).
    pub queue_capacity: usize,
    /// Mirrored requests computed at once; more are not mirrored.
    pub max_in_flight: usize,
    /// Milliseconds a mirrored computation may take before it is given up.
    pub timeout_ms: u64,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1_024,
            max_in_flight: 32,
            timeout_ms: 5_000,
        }
    }
}

impl ShadowConfig {
    /// Checks the section; `check(ok, key, message)` records a failure.
    pub fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            (1..=1_000_000).contains(&self.queue_capacity),
            "shadow.queue_capacity",
            "must be between 1 and 1000000",
        );
        check(
            (1..=100_000).contains(&self.max_in_flight),
            "shadow.max_in_flight",
            "must be between 1 and 100000",
        );
        check(
            (1..=600_000).contains(&self.timeout_ms),
            "shadow.timeout_ms",
            "must be between 1 and 600000",
        );
    }
}
