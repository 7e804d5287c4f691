//! The `[http]` section: what one request head and one HTTP/2 connection may hold, how
//! slowly a body may arrive, and how many connections one address may hold, against
//! clients that send more than any real one does.

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::server::conn::HttpSettings;

/// Limits on request heads, bodies' pace and HTTP/2 connections.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Largest request head (request line and headers), bytes: 431 above. On HTTP/2, the
    /// header list size (`SETTINGS_MAX_HEADER_LIST_SIZE`, which also bounds a
    /// CONTINUATION flood).
    pub max_header_bytes: usize,
    /// Most header fields one request may carry: 431 above.
    pub max_headers: usize,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// Slowest average pace a request body may arrive at once `body_pace_grace_ms` has
    /// passed, bytes a second: 408 below (a trickle holding a connection); 0 = any pace
    /// (the body still has `server.request_timeout_ms` in all).
    pub min_body_bytes_per_s: u64,
    /// Milliseconds a body may take before its pace counts.
    pub body_pace_grace_ms: u64,
    /// Requests one connection may carry before it is closed (HTTP/1.1: the last answer
    /// says `Connection: close`; HTTP/2: GOAWAY; the client opens a new one); 0 = no cap.
    /// Far above nginx's 1,000: a busy HTTP/2 client does that in a second, and a
    /// reconnect costs a handshake.
    pub max_requests_per_connection: u64,
    /// Connections one client address may hold open (more are closed at accept); 0 = no
    /// cap. Leave 0 behind a load balancer: every connection comes from its few addresses.
    pub max_connections_per_ip: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 256,
            max_connections_per_ip: 0,
            max_requests_per_connection: 100_000,
            min_body_bytes_per_s: 1024,
            body_pace_grace_ms: 5000,
        }
    }
}

impl HttpSection {
    /// What one connection's requests and streams may hold.
    pub fn settings(&self) -> HttpSettings {
        HttpSettings {
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            max_requests_per_connection: self.max_requests_per_connection,
        }
    }

    /// How long a body may take before its pace counts.
    pub fn body_pace_grace(&self) -> Duration {
        Duration::from_millis(self.body_pace_grace_ms)
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        // hyper's HTTP/1 read buffer has a floor of 8 KiB.
        checks.check(
            (8192..=1 << 20).contains(&self.max_header_bytes),
            "http.max_header_bytes",
            "must be between 8192 and 1048576",
        );
        checks.check(
            (8..=1000).contains(&self.max_headers),
            "http.max_headers",
            "must be between 8 and 1000",
        );
        checks.check(
            (1..=10_000).contains(&self.h2_max_concurrent_streams),
            "http.h2_max_concurrent_streams",
            "must be between 1 and 10000",
        );
    }
}
