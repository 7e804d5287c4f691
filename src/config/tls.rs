//! The `[tls]` section: the certificate and key (files, or PEM text from secrets), how
//! often they are looked at for a renewal, HSTS, and the client CA for mTLS.

use std::path::PathBuf;
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
use crate::config::check::Checks;
use crate::server::tls::{Pem, TlsSettings};

/// TLS termination. With no certificate configured, a self-signed development
/// certificate is generated at start.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Serve TLS (HTTP/1.1 and HTTP/2 by ALPN); `false` serves plaintext HTTP/1.1 and h2c
    /// prior knowledge, for running behind another TLS terminator.
    pub enabled: bool,
    /// PEM certificate chain file. With neither this nor `cert` (the `tls_cert` secret), a
    /// self-signed certificate for localhost/127.0.0.1 is generated at start.
    /// Example: `"/etc/infergate/tls/cert.pem"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<PathBuf>,
    /// PEM private key file.
    /// Example: `"/etc/infergate/tls/key.pem"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// PEM certificate chain text (usually from the `tls_cert` secret); wins over
    /// `cert_path`.
    /// Example: `"-----BEGIN CERTIFICATE-----..."`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM private key text (usually from the `tls_key` secret; a secret: never printed);
    /// wins over `key_path`.
    /// Example: `"-----BEGIN PRIVATE KEY-----..."`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// Milliseconds between looks at the certificate and key files (paths or secret files)
    /// for a renewal; SIGHUP reloads at once. New handshakes get the new pair, open
    /// connections keep theirs; a pair that cannot be used is refused with an ERROR and
    /// the old one stays.
    pub reload_interval_ms: u64,
    /// `Strict-Transport-Security: max-age=` on every HTTPS answer, seconds; 0 = none.
    /// (Browsers ignore it from a connection whose certificate they do not trust, such as
    /// the development one.)
    pub hsts_max_age_s: u64,
    /// A PEM CA bundle for client certificates (mTLS): a client presenting a certificate
    /// it issued gets the `admin` scope (/metrics, /stats) without an API key; its log
    /// name is `cert:` and the first 16 hex digits of the certificate's SHA-256. A
    /// certificate is asked for, never required (API keys still work); one that does not
    /// verify fails the handshake. Read at start.
    /// Example: `"/etc/infergate/admin-ca.pem"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca_path: Option<PathBuf>,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            cert_path: None,
            key_path: None,
            cert: None,
            key: None,
            reload_interval_ms: 1000,
            hsts_max_age_s: 31_536_000,
            client_ca_path: None,
        }
    }
}

impl TlsSection {
    /// Where the certificate, the key and the client CA come from.
    pub fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert: match (&self.cert, &self.cert_path) {
                (Some(text), _) => Some(Pem::Text(text.clone())),
                (None, Some(path)) => Some(Pem::File(path.clone())),
                (None, None) => None,
            },
            key: match (&self.key, &self.key_path) {
                (Some(secret), _) => Some(Pem::Text(secret.expose().to_owned())),
                (None, Some(path)) => Some(Pem::File(path.clone())),
                (None, None) => None,
            },
            client_ca_path: self.client_ca_path.clone(),
        }
    }

    /// The look interval.
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }

    /// The `Strict-Transport-Security` value, when TLS is on and HSTS not turned off.
    pub fn hsts(&self) -> Option<String> {
        (self.enabled && self.hsts_max_age_s > 0)
            .then(|| format!("max-age={}", self.hsts_max_age_s))
    }

    /// Checks the pair and the interval.
    pub fn validate(&self, checks: &mut Checks) {
        let has_cert = self.cert.is_some() || self.cert_path.is_some();
        let has_key = self.key.is_some() || self.key_path.is_some();
        checks.check(
            self.enabled || self.client_ca_path.is_none(),
            "tls.client_ca_path",
            "needs tls.enabled: client certificates are a part of the TLS handshake",
        );
        checks.check(
            !self.enabled || has_cert == has_key,
            if has_cert { "tls.cert" } else { "tls.key" },
            "TLS needs both a certificate and a private key (or neither, for a development certificate)",
        );
        checks.check(
            (100..=3_600_000).contains(&self.reload_interval_ms),
            "tls.reload_interval_ms",
            "must be between 100 and 3600000",
        );
    }
}
