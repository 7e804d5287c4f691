//! L2: Redis through a bb8 pool, shared by every gateway replica.
//!
//! Every Redis conversation runs on one dedicated thread ("infergate-redis") with its own
//! runtime, so connections and their driver tasks never live on an I/O thread; request
//! code hands an operation over and awaits it under `op_timeout`. Redis down, slow, or
//! holding garbage under our key is a miss — counted, logged once per transition, never an
//! error to the client. A circuit breaker ([`Breaker`]) makes an outage free: while it is
//! open, lookups skip Redis, and a health loop probes it once per interval until it answers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb8::{ManageConnection, Pool};
use bb8_redis::RedisConnectionManager;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands as _, RedisError};
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::background;
use crate::cache::CachedAnswer;
use crate::cache::breaker::{Breaker, Transition};
use crate::cache::key::CacheKey;
use crate::metrics::{L2_CIRCUIT_OPEN, L2_ERRORS_TOTAL};

/// How to reach Redis and how patient to be.
#[derive(Debug, Clone)]
pub struct L2Settings {
    /// `redis://[:password@]host:port/db` or `rediss://…` for TLS.
    pub url: String,
    /// Pooled connections.
    pub pool_size: u32,
    /// Longest wait for a pooled connection (connecting included).
    pub connect_timeout: Duration,
    /// Longest wait for one command.
    pub op_timeout: Duration,
    /// How long an entry lives in Redis.
    pub ttl: Duration,
    /// Consecutive failures that open the circuit.
    pub breaker_threshold: u32,
    /// How long the circuit stays open before a probe.
    pub breaker_cooldown: Duration,
    /// How often the health loop pings Redis.
    pub health_interval: Duration,
}

/// Why the L2 could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    /// The URL is not a Redis URL.
    #[error("invalid redis.url: {0}")]
    Url(#[source] RedisError),
    /// The Redis thread could not start.
    #[error("cannot start the Redis thread")]
    Thread(#[from] background::SpawnError),
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A valid entry.
    Hit(CachedAnswer),
    /// No entry (or one that is not ours: garbage is a miss, and gets overwritten).
    Miss,
    /// Redis was not asked: the circuit is open.
    Skipped,
    /// Redis failed or was too slow; a miss for the caller.
    Failed,
}

/// A pooled connection that remembers whether a command found it broken, so bb8 can
/// replace it (bb8-redis's own manager never reports a broken connection).
pub struct Conn {
    inner: MultiplexedConnection,
    broken: bool,
}

/// bb8 manager: bb8-redis's for connecting and checking, ours for `has_broken`.
pub struct Manager(RedisConnectionManager);

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = RedisError;

    async fn connect(&self) -> Result<Conn, RedisError> {
        Ok(Conn {
            inner: self.0.connect().await?,
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut Conn) -> Result<(), RedisError> {
        self.0.is_valid(&mut conn.inner).await
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken
    }
}

/// The Redis tier.
pub struct L2 {
    runtime: Handle,
    pool: Pool<Manager>,
    breaker: Arc<Mutex<Breaker>>,
    /// Whether Redis has answered at least once: until then its health is unknown, and a
    /// replica that requires it is not ready (a closed breaker alone proves nothing).
    reached: AtomicBool,
    cfg: L2Settings,
}

/// What the gateway knows of Redis, for `/ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Health {
    /// Not answered yet (the first health ping is under way or failing below the threshold).
    Connecting,
    /// Answering.
    Ok,
    /// Circuit open or probing.
    Down,
}

impl L2 {
    /// Starts the Redis thread, the pool (connecting lazily) and the health loop. Never
    /// waits for Redis: a gateway starts while Redis is down.
    pub fn start(cfg: L2Settings) -> Result<Arc<Self>, L2Error> {
        let manager = Manager(RedisConnectionManager::new(cfg.url.as_str()).map_err(L2Error::Url)?);
        // The thread only runs what the pool and the request path spawn onto its runtime.
        let handle = background::spawn("infergate-redis", std::future::pending::<()>)?.runtime;
        let pool = {
            let _entered = handle.enter();
            Pool::builder()
                .max_size(cfg.pool_size.max(1))
                .connection_timeout(cfg.connect_timeout)
                // `has_broken` is real (see `Conn`), so no PING on every checkout.
                .test_on_check_out(false)
                .build_unchecked(manager)
        };
        let l2 = Arc::new(Self {
            runtime: handle.clone(),
            pool,
            breaker: Arc::new(Mutex::new(Breaker::new(
                cfg.breaker_threshold,
                cfg.breaker_cooldown,
            ))),
            reached: AtomicBool::new(false),
            cfg,
        });
        metrics::gauge!(L2_CIRCUIT_OPEN).set(0.0);
        handle.spawn(health_loop(Arc::clone(&l2)));
        Ok(l2)
    }

    /// Whether Redis is considered down (circuit open or probing).
    pub fn is_down(&self) -> bool {
        self.breaker().is_down()
    }

    /// Down, not reached yet, or answering.
    pub fn health(&self) -> L2Health {
        if self.is_down() {
            L2Health::Down
        } else if self.reached.load(Ordering::Relaxed) {
            L2Health::Ok
        } else {
            L2Health::Connecting
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn allow(&self) -> bool {
        self.breaker().allow(Instant::now())
    }

    fn record(&self, ok: bool) {
        if ok {
            self.reached.store(true, Ordering::Relaxed);
        }
        let transition = {
            let mut b = self.breaker();
            if ok {
                b.success()
            } else {
                b.failure(Instant::now())
            }
        };
        match transition {
            Some(Transition::Opened) => {
                metrics::gauge!(L2_CIRCUIT_OPEN).set(1.0);
                tracing::warn!(
                    cooldown_ms = self.cfg.breaker_cooldown.as_millis() as u64,
                    "Redis is failing: L2 lookups are skipped until it answers again"
                );
            }
            Some(Transition::Closed) => {
                metrics::gauge!(L2_CIRCUIT_OPEN).set(0.0);
                tracing::info!("Redis answers again: L2 lookups resume");
            }
            None => {}
        }
    }

    /// Looks `key` up. Never fails: every problem is a miss.
    pub async fn get(&self, key: &CacheKey) -> Lookup {
        if !self.allow() {
            return Lookup::Skipped;
        }
        let pool = self.pool.clone();
        let redis_key = key.redis_key();
        let op_timeout = self.cfg.op_timeout;
        let op = self.runtime.spawn(async move {
            run(
                &pool,
                op_timeout,
                async move |c: &mut MultiplexedConnection| {
                    c.get::<_, Option<Vec<u8>>>(&redis_key).await
                },
            )
            .await
        });
        match op.await {
            Ok(Ok(Some(bytes))) => {
                self.record(true);
                match CachedAnswer::decode(&bytes) {
                    Some(answer) => Lookup::Hit(answer),
                    None => {
                        metrics::counter!(L2_ERRORS_TOTAL, "kind" => "garbage").increment(1);
                        tracing::debug!(key = %key, "L2 entry is not ours; treated as a miss");
                        Lookup::Miss
                    }
                }
            }
            Ok(Ok(None)) => {
                self.record(true);
                Lookup::Miss
            }
            Ok(Err(kind)) => {
                metrics::counter!(L2_ERRORS_TOTAL, "kind" => kind).increment(1);
                self.record(false);
                Lookup::Failed
            }
            Err(_) => {
                metrics::counter!(L2_ERRORS_TOTAL, "kind" => "stopped").increment(1);
                Lookup::Failed
            }
        }
    }

    /// Stores `answer` under `key` in the background; the caller never waits for Redis.
    pub fn set(self: &Arc<Self>, key: &CacheKey, answer: &CachedAnswer) {
        if !self.allow() {
            return;
        }
        let this = Arc::clone(self);
        let redis_key = key.redis_key();
        let bytes = answer.encode();
        let ttl_s = self.cfg.ttl.as_secs().max(1);
        self.runtime.spawn(async move {
            let outcome = run(
                &this.pool,
                this.cfg.op_timeout,
                async move |c: &mut MultiplexedConnection| {
                    c.set_ex::<_, _, ()>(&redis_key, bytes, ttl_s).await
                },
            )
            .await;
            if let Err(kind) = &outcome {
                metrics::counter!(L2_ERRORS_TOTAL, "kind" => *kind).increment(1);
            }
            this.record(outcome.is_ok());
        });
    }

    async fn ping(&self) -> Result<(), &'static str> {
        run(
            &self.pool,
            self.cfg.op_timeout,
            async |c: &mut MultiplexedConnection| redis::cmd("PING").query_async::<String>(c).await,
        )
        .await
        .map(|_| ())
    }
}

/// Runs one command on a pooled connection under `op_timeout`, marking the connection
/// broken when the command shows it is (I/O error, dropped, unrecoverable) or when it did
/// not answer in time (a wedged connection is not worth keeping). Errors are a metric label.
async fn run<T, F>(pool: &Pool<Manager>, op_timeout: Duration, op: F) -> Result<T, &'static str>
where
    F: AsyncFnOnce(&mut MultiplexedConnection) -> Result<T, RedisError>,
{
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(bb8::RunError::TimedOut) => return Err("connect_timeout"),
        Err(bb8::RunError::User(_)) => return Err("connect"),
    };
    match tokio::time::timeout(op_timeout, op(&mut conn.inner)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                conn.broken = true;
            }
            Err(if e.is_timeout() { "timeout" } else { "command" })
        }
        Err(_) => {
            conn.broken = true;
            Err("timeout")
        }
    }
}

/// Pings Redis every `health_interval` whenever the breaker allows, so `/ready` knows
/// about an outage without traffic, and the circuit closes soon after Redis is back.
async fn health_loop(l2: Arc<L2>) {
    let mut tick = tokio::time::interval(l2.cfg.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if Arc::strong_count(&l2) == 1 {
            return; // the gateway is gone
        }
        if !l2.allow() {
            continue;
        }
        let outcome = l2.ping().await;
        if let Err(kind) = outcome {
            metrics::counter!(L2_ERRORS_TOTAL, "kind" => kind).increment(1);
        }
        l2.record(outcome.is_ok());
    }
}
