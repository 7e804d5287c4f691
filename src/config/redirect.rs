//! The `[redirect]` section: an optional plain-HTTP listener that sends every client to
//! HTTPS (as nginx's `return 301 https://$host$request_uri`) and answers `/health`.

use std::net::SocketAddr;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;

/// The redirect listener; off without `listen`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectSection {
    /// Where a plain-HTTP listener binds that answers every request with a redirect to
    /// HTTPS (301 for GET and HEAD, 308 otherwise) and serves GET /health itself; it
    /// shares its port across a rollout (`SO_REUSEPORT`) like `server.listen`. Unset: no
    /// such listener.
    /// Example: `"0.0.0.0:8080"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The HTTPS port the redirects name; unset: `server.listen`'s port. 443 is left out
    /// of the URL. Set it where a proxy or Docker publishes the gateway on another port.
    /// Example: `443`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u16>,
}

impl RedirectSection {
    /// The port the redirects name, given the port the public listener got.
    pub fn https_port(&self, public_port: u16) -> u16 {
        self.https_port.unwrap_or(public_port)
    }

    /// Checks the listener against the public one.
    pub fn validate(&self, public: SocketAddr, checks: &mut Checks) {
        checks.check(
            self.listen
                .is_none_or(|l| l.port() == 0 || l.port() != public.port()),
            "redirect.listen",
            "must not be server.listen's port",
        );
        checks.check(
            self.https_port != Some(0),
            "redirect.https_port",
            "must be a port (1 to 65535)",
        );
    }
}
