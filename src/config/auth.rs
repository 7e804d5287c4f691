//! The `[auth]` section: where the API keys come from, and how often their file is looked
//! at for changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;

/// API keys: who may call which routes.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// The API key file: one `NAME SCOPES sha256:HEX` line per key (scopes: `predict`,
    /// `admin`), holding hashes, never keys; `infergate hash-key --name NAME --scopes
    /// predict` makes a key and prints its line. Unset: `<secrets.dir>/api_keys` (the
    /// Docker secret `api_keys`). With no file the gateway is open (one WARN at start);
    /// with one, /predict needs a `predict` key, /metrics and /stats an `admin` key
    /// (admin implies predict); /health, /ready and /openapi.json stay open. Clients send
    /// `Authorization: Bearer KEY` or `X-API-Key: KEY`.
    /// Example: `"/etc/infergate/api_keys"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_path: Option<PathBuf>,
    /// Milliseconds between looks at the key file for changes; SIGHUP looks at once. A
    /// file that turns invalid or goes away keeps the keys in force (with an ERROR).
    pub reload_interval_ms: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            keys_path: None,
            reload_interval_ms: 1000,
        }
    }
}

/// The key file's name in the secrets directory.
pub const KEYS_SECRET: &str = "api_keys";

impl AuthSection {
    /// The key file: `keys_path`, or `api_keys` in `secrets_dir`.
    pub fn keys_path(&self, secrets_dir: &Path) -> PathBuf {
        self.keys_path
            .clone()
            .unwrap_or_else(|| secrets_dir.join(KEYS_SECRET))
    }

    /// The look interval.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            (100..=3_600_000).contains(&self.reload_interval_ms),
            "auth.reload_interval_ms",
            "must be between 100 and 3600000",
        );
        checks.check(
            self.keys_path
                .as_ref()
                .is_none_or(|p| !p.as_os_str().is_empty()),
            "auth.keys_path",
            "must not be empty",
        );
    }
}
