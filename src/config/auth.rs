//! The `[auth]` section: where the API keys come from, and how often their file is looked
//! at for changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// API keys (see `auth`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The API key file (`NAME SCOPES sha256:HEX` per line; `infergate hash-key` prints
    /// one); default `<secrets.dir>/api_keys`. Where no file exists the gateway is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_path: Option<PathBuf>,
    /// How often the key file is looked at for changes, ms (SIGHUP looks at once).
    pub reload_interval_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            keys_path: None,
            reload_interval_ms: 1000,
        }
    }
}

/// The key file's name in the secrets directory.
pub const KEYS_SECRET: &str = "api_keys";

impl AuthConfig {
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

    /// Checks ranges; `check(ok, key, message)` records a failure.
    pub fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            (100..=3_600_000).contains(&self.reload_interval_ms),
            "auth.reload_interval_ms",
            "must be between 100 and 3600000",
        );
        check(
            self.keys_path
                .as_ref()
                .is_none_or(|p| !p.as_os_str().is_empty()),
            "auth.keys_path",
            "must not be empty",
        );
    }
}
