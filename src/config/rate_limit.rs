//! The `[rate_limit]` section: token buckets per API key and per client address, how many
//! clients are tracked, and which proxies may name the client.

use std::net::IpAddr;

use documented::{Documented, DocumentedFields};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::rate_limit::RateLimitSettings;

/// A trusted proxy: a CIDR block (`10.0.0.0/8`) or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProxyNet(pub IpNet);

impl TryFrom<String> for ProxyNet {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(Self)
            .map_err(|_| format!("{s:?} is neither an address nor a CIDR block (10.0.0.0/8)"))
    }
}

impl From<ProxyNet> for String {
    fn from(net: ProxyNet) -> Self {
        net.0.to_string()
    }
}

/// Rate limits: token buckets (GCRA) per API key, and per client address for requests
/// without one. A rate of 0 turns that limit off (the default: an edge's right numbers
/// depend on its clients). /health and /ready are never limited; a request over its
/// bucket gets 429 with `Retry-After` and the `RateLimit` headers.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests per second each API key may make, on average; 0 = unlimited.
    pub per_key_rps: f64,
    /// Requests a key may make at once, above its rate (the bucket's size).
    pub per_key_burst: u32,
    /// Requests per second each client address may make without a key; 0 = unlimited.
    pub per_ip_rps: f64,
    /// Requests an address may make at once without a key.
    pub per_ip_burst: u32,
    /// Most clients (keys and addresses) whose buckets are kept; past it the least
    /// recently seen is forgotten (its next request starts a full bucket), so a flood of
    /// distinct addresses costs bounded memory.
    pub max_tracked_clients: usize,
    /// Peers (addresses or CIDR blocks, e.g. `["10.0.0.0/8"]`) whose `X-Forwarded-For` /
    /// `Forwarded` headers are believed: behind them, the client is the nearest address
    /// not in this list. Empty: the TCP peer is the client, whatever the headers say.
    pub trusted_proxies: Vec<ProxyNet>,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self {
            per_key_rps: 0.0,
            per_key_burst: 100,
            per_ip_rps: 0.0,
            per_ip_burst: 20,
            max_tracked_clients: 100_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Highest rate accepted: a million requests a second is unlimited in practice.
const MAX_RPS: f64 = 1_000_000.0;

impl RateLimitSection {
    /// The limits, with the proxies as address blocks.
    pub fn settings(&self) -> RateLimitSettings {
        RateLimitSettings {
            per_key_rps: self.per_key_rps,
            per_key_burst: self.per_key_burst,
            per_ip_rps: self.per_ip_rps,
            per_ip_burst: self.per_ip_burst,
            max_tracked_clients: self.max_tracked_clients,
            trusted_proxies: self.trusted_proxies.iter().map(|n| n.0).collect(),
        }
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        for (key, rps) in [
            ("rate_limit.per_key_rps", self.per_key_rps),
            ("rate_limit.per_ip_rps", self.per_ip_rps),
        ] {
            checks.check(
                rps.is_finite() && (rps == 0.0 || (0.001..=MAX_RPS).contains(&rps)),
                key,
                "must be 0 (off) or between 0.001 and 1000000",
            );
        }
        for (key, burst) in [
            ("rate_limit.per_key_burst", self.per_key_burst),
            ("rate_limit.per_ip_burst", self.per_ip_burst),
        ] {
            checks.check(burst >= 1, key, "must be at least 1");
        }
        checks.check(
            (16..=10_000_000).contains(&self.max_tracked_clients),
            "rate_limit.max_tracked_clients",
            "must be between 16 and 10000000",
        );
    }
}
