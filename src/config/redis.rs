//! The `[redis]` section: the shared second cache tier, and how patient to be with it.

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::cache::l2::L2Settings;
use crate::config::Secret;
use crate::config::cache::CacheSection;
use crate::config::check::Checks;

/// Redis, the shared second cache tier. Without `url`, only the in-process tier runs.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:6379/0`, `rediss://` (TLS, the server certificate checked against
    /// the system roots; a `#insecure` suffix skips the check, for self-signed test setups
    /// only) or `redis+unix://`. It may carry a password (`redis://:pw@host:6379/0`), so
    /// it is a secret: never printed; the `redis_url` Docker secret sets it too. Unset:
    /// only the in-process tier (the embedded default).
    /// Example: `"redis://127.0.0.1:6379/0"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Password, when not in the URL (usually from the `redis_password` secret).
    /// Example: `"change-me"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Pooled connections.
    pub pool_size: u32,
    /// Milliseconds to get a pooled connection, connecting included; past it, the lookup
    /// is a miss.
    pub connect_timeout_ms: u64,
    /// Milliseconds one command may take; past it, the lookup is a miss.
    pub timeout_ms: u64,
    /// Consecutive failures that open the circuit: Redis is then skipped (free for
    /// requests) and reported "down" by /ready, until a probe after
    /// `breaker_cooldown_ms` answers.
    pub breaker_threshold: u32,
    /// Milliseconds the circuit stays open before one probe.
    pub breaker_cooldown_ms: u64,
    /// Milliseconds between health pings (so /ready notices an outage without traffic).
    pub health_interval_ms: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: None,
            password: None,
            pool_size: 8,
            connect_timeout_ms: 200,
            timeout_ms: 100,
            breaker_threshold: 3,
            breaker_cooldown_ms: 1000,
            health_interval_ms: 1000,
        }
    }
}

impl RedisSection {
    /// The URL to connect to, with `password` put in when the URL has none.
    pub fn connection_url(&self) -> Option<String> {
        let url = self.url.as_ref()?.expose();
        let Some(password) = &self.password else {
            return Some(url.to_owned());
        };
        let (scheme, rest) = url.split_once("://")?;
        if rest.contains('@') {
            return Some(url.to_owned());
        }
        Some(format!(
            "{scheme}://:{}@{rest}",
            percent_encode(password.expose())
        ))
    }

    /// The second tier's connection and patience; `None` without `url` or with the cache
    /// off.
    pub fn l2_settings(&self, cache: &CacheSection) -> Option<L2Settings> {
        if !cache.enabled {
            return None;
        }
        Some(L2Settings {
            url: self.connection_url()?,
            pool_size: self.pool_size,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            op_timeout: Duration::from_millis(self.timeout_ms),
            ttl: cache.ttl(),
            breaker_threshold: self.breaker_threshold,
            breaker_cooldown: Duration::from_millis(self.breaker_cooldown_ms),
            health_interval: Duration::from_millis(self.health_interval_ms),
        })
    }

    /// Checks the URL's scheme and ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.url.as_ref().is_none_or(|u| {
                let u = u.expose();
                u.starts_with("redis://")
                    || u.starts_with("rediss://")
                    || u.starts_with("redis+unix://")
            }),
            "redis.url",
            "must start with redis://, rediss:// or redis+unix://",
        );
        checks.check(
            (1..=256).contains(&self.pool_size),
            "redis.pool_size",
            "must be between 1 and 256",
        );
        for (key, ms) in [
            ("redis.connect_timeout_ms", self.connect_timeout_ms),
            ("redis.timeout_ms", self.timeout_ms),
            ("redis.breaker_cooldown_ms", self.breaker_cooldown_ms),
            ("redis.health_interval_ms", self.health_interval_ms),
        ] {
            checks.check(ms >= 1, key, "must be at least 1 millisecond");
        }
        checks.check(
            self.breaker_threshold >= 1,
            "redis.breaker_threshold",
            "must be at least 1",
        );
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
