//! The `[model]` section: which tabular model to serve, and a test aid that slows it down.

use std::path::PathBuf;
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;

/// Which tabular model to serve. Without `path`, the bundled Iris demo model.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// A safetensors weights file of a tabular model to serve instead of the bundled Iris
    /// demo model (see src/infer/demo/ for the format).
    /// Example: `"/models/model.safetensors"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Its manifest; unset: `manifest.json` beside `path`.
    /// Example: `"/models/manifest.json"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_path: Option<PathBuf>,
    /// A test aid: every forward pass of a tabular model (this one and the repository's)
    /// first sleeps this long, ms (a deliberately slow model of known speed, for deadline,
    /// overload and reload tests and benchmarks); 0 = none.
    pub forward_delay_ms: u64,
}

impl ModelSection {
    /// The manifest of the configured model: `manifest_path`, or `manifest.json` beside
    /// `path`; `None` for the bundled one.
    pub fn manifest(&self) -> Option<PathBuf> {
        let weights = self.path.as_ref()?;
        Some(
            self.manifest_path
                .clone()
                .unwrap_or_else(|| weights.with_file_name("manifest.json")),
        )
    }

    /// The sleep before every tabular forward pass; `None` when 0.
    pub fn forward_delay(&self) -> Option<Duration> {
        (self.forward_delay_ms > 0).then(|| Duration::from_millis(self.forward_delay_ms))
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.manifest_path.is_none() || self.path.is_some(),
            "model.manifest_path",
            "is set but model.path is not",
        );
        checks.check(
            self.forward_delay_ms <= 60_000,
            "model.forward_delay_ms",
            "must be at most 60000",
        );
    }
}
