//! The `[database]` section: the PostgreSQL the prediction log writes to.

use std::path::PathBuf;
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::config::check::Checks;
use crate::prediction_log::db::DbSettings;

/// PostgreSQL, where every prediction is logged. Without `url`, the prediction log is off
/// (the embedded default) and /stats counts from memory.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// `postgres://user@host:5432/db` (or a `key=value` string). It may carry a password,
    /// so it is a secret: never printed; the `database_url` Docker secret sets it too.
    /// Example: `"postgres://infergate@127.0.0.1:5432/infergate"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Password, when not in the URL (usually from the `database_password` secret).
    /// Example: `"change-me"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Milliseconds to wait for a connection.
    pub connect_timeout_ms: u64,
    /// Apply the embedded schema migrations at start and on every reconnect (under an
    /// advisory lock, so replicas starting together apply each once). `false`: run
    /// `infergate migrate` yourself.
    pub migrate_on_start: bool,
    /// A PEM CA bundle: speak TLS to Postgres and verify its certificate against it.
    /// Example: `"/run/secrets/postgres_ca.pem"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_path: Option<PathBuf>,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            connect_timeout_ms: 2000,
            migrate_on_start: true,
            tls_ca_path: None,
        }
    }
}

impl DatabaseSection {
    /// How to reach the database, for `serve` and `migrate`; `None` without `url`.
    pub fn settings(&self) -> Option<DbSettings> {
        Some(DbSettings {
            url: self.url.as_ref()?.expose().to_owned(),
            password: self.password.as_ref().map(|p| p.expose().to_owned()),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            tls_ca: self.tls_ca_path.clone(),
        })
    }

    /// Checks the URL and the timeout.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.url
                .as_ref()
                .is_none_or(|u| u.expose().parse::<tokio_postgres::Config>().is_ok()),
            "database.url",
            "is not a PostgreSQL connection URL (postgres://user@host:5432/db)",
        );
        checks.check(
            self.connect_timeout_ms >= 1,
            "database.connect_timeout_ms",
            "must be at least 1 millisecond",
        );
    }
}
