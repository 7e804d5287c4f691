//! The `[http]` section: what one request head and one HTTP/2 connection may hold, and how
//! many connections one address may, against clients that send more than any real one does.

use serde::{Deserialize, Serialize};

/// Limits on request heads and HTTP/2 connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request head (request line and headers), bytes: 431 above. On HTTP/2,
    /// the header list size (`SETTINGS_MAX_HEADER_LIST_SIZE`, which also bounds a
    /// CONTINUATION flood).
    pub max_header_bytes: usize,
    /// Most header fields one request may carry: 431 above.
    pub max_headers: usize,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// Slowest average pace a request body may arrive at once
    /// `body_pace_grace_ms` has passed, bytes a second (408 below); 0 = any pace (the
    /// body still has `server.request_timeout_ms` in all).
    pub min_body_bytes_per_s: u64,
    /// How long a body may take before its pace counts, ms.
    pub body_pace_grace_ms: u64,
    /// Requests one connection may carry before it is closed (HTTP/1.1: the last answer
    /// says `Connection: close`; HTTP/2: GOAWAY); 0 = no cap. Far above nginx's 1,000: a
    /// busy HTTP/2 client does that in a second, and a reconnect costs a handshake.
    pub max_requests_per_connection: u64,
    /// Connections one client address may hold open; 0 = no cap (the default: behind a
    /// load balancer every connection comes from its few addresses).
    pub max_connections_per_ip: usize,
}

impl Default for HttpConfig {
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

impl HttpConfig {
    /// Checks ranges; `check(ok, key, message)` records a failure.
    pub fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        // hyper's HTTP/1 read buffer has a floor of 8 KiB.
        check(
            (8192..=1 << 20).contains(&self.max_header_bytes),
            "http.max_header_bytes",
            "must be between 8192 and 1048576",
        );
        check(
            (8..=1000).contains(&self.max_headers),
            "http.max_headers",
            "must be between 8 and 1000",
        );
        check(
            (1..=10_000).contains(&self.h2_max_concurrent_streams),
            "http.h2_max_concurrent_streams",
            "must be between 1 and 10000",
        );
    }
}
