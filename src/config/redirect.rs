//! The `[redirect]` section: an optional plain-HTTP listener that sends every client to
//! HTTPS (as nginx's `return 301 https://$host$request_uri`) and answers `/health`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The redirect listener; off without `listen`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectConfig {
    /// Where the plain-HTTP listener binds (`SO_REUSEPORT`, like the public one, so a
    /// rollout's two instances share it); `None`: no such listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The HTTPS port the redirects name; `None`: `server.listen`'s port. 443 is left out
    /// of the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_port: Option<u16>,
}

impl RedirectConfig {
    /// Checks the listener against the public one; `check(ok, key, message)` records a
    /// failure.
    pub fn validate(&self, public: SocketAddr, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            self.listen
                .is_none_or(|l| l.port() == 0 || l.port() != public.port()),
            "redirect.listen",
            "must not be server.listen's port",
        );
        check(
            self.https_port != Some(0),
            "redirect.https_port",
            "must be a port (1 to 65535)",
        );
    }
}
