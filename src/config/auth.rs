//! The `[auth]` section: where the API keys come from, how often their file is looked at
//! for changes, and protected mode (who reaches the admin routes while there are no keys).

use std::path::{Path, PathBuf};
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::auth::protected::{LocalNet, ProtectedSettings};
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
    /// Protected mode, as Redis has it: while no key file is in force, the admin routes
    /// (/metrics, /stats, /console/status, the repository API, pages under `ui.scope =
    /// "admin"`) answer only to clients on this machine: loopback peers, the check socket,
    /// and `local_networks`. Anyone else gets 403 `protected_mode`. /predict, the OIP
    /// inference routes, /health, /ready and /openapi.json stay open. Behind
    /// `rate_limit.trusted_proxies` the client the proxy names is the one judged. `false`
    /// opens the admin routes to anyone who can connect (with a WARN naming them). With a
    /// key file, scopes decide and this has no effect.
    pub protected_mode: bool,
    /// Networks protected mode counts as this machine's, beside loopback: CIDR blocks or
    /// addresses (`"172.16.0.0/12"`, `"10.1.2.3"`), or `"attached"` for every network this
    /// host has an interface on, read at start. `"attached"` is meant for a container,
    /// whose networks are its Compose stack's (Prometheus, and the Docker host through the
    /// published port); on a bare host it would admit the whole LAN. Empty: loopback only.
    /// Example: `["attached"]`
    pub local_networks: Vec<LocalNet>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            keys_path: None,
            reload_interval_ms: 1000,
            protected_mode: true,
            local_networks: Vec::new(),
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

    /// Protected mode's settings.
    pub fn protected(&self) -> ProtectedSettings {
        ProtectedSettings {
            enabled: self.protected_mode,
            local_networks: self.local_networks.clone(),
        }
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
