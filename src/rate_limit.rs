//! Token buckets per API key, and per client address for requests without a key: the
//! second half of the limits/auth step, after `auth` has named the caller. A request over
//! its bucket is answered 429 with `Retry-After`; every answer under a limit carries the
//! IETF `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers).
//!
//! The buckets are `governor`'s GCRA cells, one per client, kept in sharded LRU maps of at
//! most `rate_limit.max_tracked_clients` in all (as nginx's `limit_req` zone forgets its
//! least recently used state when full): a flood of distinct addresses costs bounded
//! memory, at the price of a forgotten client starting again with a full bucket.

pub mod client_addr;

use std::hash::{Hash, Hasher as _};
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use lru::LruCache;

use crate::metrics::RATE_LIMITED_TOTAL;
use crate::rate_limit::client_addr::TrustedProxies;

/// The limits (`[rate_limit]`); a rate of 0 turns one off.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// Requests per second each API key may make, on average.
    pub per_key_rps: f64,
    /// Requests a key may make at once.
    pub per_key_burst: u32,
    /// Requests per second each client address may make without a key.
    pub per_ip_rps: f64,
    /// Requests an address may make at once without a key.
    pub per_ip_burst: u32,
    /// Most clients whose buckets are kept (least recently seen forgotten first).
    pub max_tracked_clients: usize,
    /// Peers whose forwarding headers name the client.
    pub trusted_proxies: Vec<IpNet>,
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// An API key, by name.
    Key(Arc<str>),
    /// A client address, for requests without a key.
    Addr(IpAddr),
}

/// One limit: a rate and a burst.
#[derive(Debug, Clone, Copy)]
struct Policy {
    /// Its name in the `RateLimit` headers.
    name: &'static str,
    quota: Quota,
    burst: u32,
    /// Time for one token to come back.
    period: Duration,
}

impl Policy {
    fn new(name: &'static str, rps: f64, burst: u32) -> Option<Self> {
        let burst = NonZeroU32::new(burst)?;
        if rps.is_nan() || rps <= 0.0 {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / rps).max(Duration::from_nanos(1));
        Some(Self {
            name,
            quota: Quota::with_period(period)?.allow_burst(burst),
            burst: burst.get(),
            period,
        })
    }

    /// Seconds a full bucket takes to refill: the policy's window.
    fn window_s(&self) -> u64 {
        ceil_secs(self.period * self.burst)
    }
}

/// The answer to one request under a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The policy's name: `key` or `ip`.
    pub policy: &'static str,
    /// Requests a full bucket holds.
    pub quota: u32,
    /// Seconds in which a full bucket's requests may be made, on average.
    pub window_s: u64,
    /// Requests left in the bucket now.
    pub remaining: u32,
    /// Seconds until the bucket is full again (allowed) or holds one request (refused).
    pub reset_s: u64,
    /// `Some(seconds to wait)` when refused: a 429 with `Retry-After`.
    pub retry_after_s: Option<u64>,
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// Shards of the bucket map: requests from different clients rarely wait on one lock.
const SHARDS: usize = 16;

/// The buckets, and which limits apply.
pub struct RateLimits {
    per_key: Option<Policy>,
    per_ip: Option<Policy>,
    shards: Box<[Mutex<LruCache<Client, Limiter>>]>,
    clock: DefaultClock,
    proxies: TrustedProxies,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_key", &self.per_key)
            .field("per_ip", &self.per_ip)
            .field("tracked", &self.tracked())
            .finish()
    }
}

impl RateLimits {
    /// The limits `cfg` sets (a rate of 0 turns one off).
    pub fn new(cfg: &RateLimitSettings) -> Self {
        // Never more than the cap in all (validation keeps it at least one per shard).
        let per_shard = (cfg.max_tracked_clients / SHARDS).max(1);
        let capacity = NonZeroUsize::new(per_shard).unwrap_or(NonZeroUsize::MIN);
        Self {
            per_key: Policy::new("key", cfg.per_key_rps, cfg.per_key_burst),
            per_ip: Policy::new("ip", cfg.per_ip_rps, cfg.per_ip_burst),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(capacity)))
                .collect(),
            clock: DefaultClock::default(),
            proxies: TrustedProxies::new(cfg.trusted_proxies.clone()),
        }
    }

    /// The client behind `peer`: `peer` itself, or the address a trusted proxy's
    /// forwarding headers name (`rate_limit.trusted_proxies`).
    pub fn client_addr(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        self.proxies.client(peer, headers)
    }

    /// Whether any limit is on.
    pub fn is_on(&self) -> bool {
        self.per_key.is_some() || self.per_ip.is_some()
    }

    /// Takes one request from `client`'s bucket; `None` when no limit applies to it.
    pub fn check(&self, client: Client) -> Option<Verdict> {
        let policy = match client {
            Client::Key(_) => self.per_key?,
            Client::Addr(_) => self.per_ip?,
        };
        let shard = &self.shards[shard_of(&client)];
        let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = buckets.get_or_insert_mut(client, || {
            RateLimiter::direct_with_clock(policy.quota, self.clock.clone())
                .with_middleware::<StateInformationMiddleware>()
        });
        let outcome = limiter.check();
        drop(buckets);
        Some(match outcome {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let missing = policy.burst.saturating_sub(remaining);
                Verdict {
                    policy: policy.name,
                    quota: policy.burst,
                    window_s: policy.window_s(),
                    remaining,
                    reset_s: ceil_secs(policy.period * missing),
                    retry_after_s: None,
                }
            }
            Err(not_until) => {
                metrics::counter!(RATE_LIMITED_TOTAL, "policy" => policy.name).increment(1);
                let wait = ceil_secs(not_until.wait_time_from(self.clock.now())).max(1);
                Verdict {
                    policy: policy.name,
                    quota: policy.burst,
                    window_s: policy.window_s(),
                    remaining: 0,
                    reset_s: wait,
                    retry_after_s: Some(wait),
                }
            }
        })
    }

    /// Clients whose buckets are kept now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

fn shard_of(client: &Client) -> usize {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    client.hash(&mut h);
    (h.finish() % SHARDS as u64) as usize
}

/// Whole seconds, rounded up: a client told to wait 0 s when 0.4 s remain comes back early.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_key_rps: f64, per_ip_rps: f64, max: usize) -> RateLimits {
        RateLimits::new(&RateLimitSettings {
            per_key_rps,
            per_key_burst: 3,
            per_ip_rps,
            per_ip_burst: 2,
            max_tracked_clients: max,
            trusted_proxies: Vec::new(),
        })
    }

    fn key(name: &str) -> Client {
        Client::Key(Arc::from(name))
    }

    #[test]
    fn a_burst_beyond_the_bucket_is_refused_with_the_time_to_wait() {
        // One token every 2 s, 3 at once.
        let l = limits(0.5, 0.0, 100);
        let remaining: Vec<u32> = (0..3)
            .map(|_| l.check(key("a")).unwrap())
            .inspect(|v| assert_eq!(v.retry_after_s, None))
            .map(|v| v.remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = l.check(key("a")).unwrap();
        assert_eq!(refused.retry_after_s, Some(2));
        assert_eq!((refused.quota, refused.window_s), (3, 6));
        assert_eq!(refused.policy, "key");
        // Another key has its own bucket.
        assert_eq!(l.check(key("b")).unwrap().retry_after_s, None);
    }

    #[test]
    fn a_limit_set_to_zero_is_off() {
        let l = limits(0.0, 1.0, 100);
        assert!(l.is_on());
        assert_eq!(l.check(key("a")), None);
        let addr = Client::Addr("192.0.2.1".parse().unwrap());
        assert!(l.check(addr.clone()).unwrap().retry_after_s.is_none());
        assert!(!limits(0.0, 0.0, 100).is_on());
    }

    #[test]
    fn distinct_clients_past_the_cap_evict_the_least_recent() {
        let l = limits(1.0, 1.0, 1600);
        for i in 0..50_000u32 {
            let addr = IpAddr::from(i.to_be_bytes());
            l.check(Client::Addr(addr));
        }
        assert_eq!(l.tracked(), 1600);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
