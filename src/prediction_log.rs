//! The prediction log: every served prediction becomes a row in PostgreSQL, written off the
//! request path and never lost.
//!
//! The request path calls [`PredictionLog::submit`], a `try_send` on a bounded queue that
//! never waits. A writer on its own thread ("infergate-log") batches rows by size or age
//! and COPYs them into `predictions`; what Postgres cannot take goes to a spool on disk and
//! is replayed, deduplicated by `prediction_id`, once it answers again. Modules: the row
//! ([`record`]), the schema ([`schema`]), SQL ([`db`]), the spool ([`spool`]), the batching
//! and backoff state ([`flush`]) and the loop ([`writer`]).

pub mod db;
pub mod flush;
pub mod record;
pub mod schema;
pub mod spool;
pub mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::background;
use crate::metrics::{LOG_ROWS_TOTAL, LOG_SPOOL_TORN_TOTAL};
use crate::prediction_log::db::{Connector, DbCounts, DbError, DbSettings};
use crate::prediction_log::record::LogRow;
use crate::prediction_log::spool::{Spool, SpoolError};
use crate::prediction_log::writer::{Outcome, Writer, WriterSettings};

/// Everything the prediction log is built from.
#[derive(Debug, Clone)]
pub struct PredictionLogSettings {
    /// How to reach Postgres.
    pub db: DbSettings,
    /// Batching, timeouts, retries.
    pub writer: WriterSettings,
    /// Rows the queue holds between the request path and the writer.
    pub queue_capacity: usize,
    /// Where rows wait while Postgres is away.
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold; beyond it, rows are dropped (loudly).
    pub spool_max_bytes: u64,
    /// How long a `/stats` reading of the table is reused.
    pub stats_cache: Duration,
    /// Time-based retention, when on.
    pub retention: Option<RetentionSettings>,
}

/// Deleting old rows, in small batches.
#[derive(Debug, Clone, Copy)]
pub struct RetentionSettings {
    /// Rows older than this go.
    pub max_age: Duration,
    /// How often to look.
    pub interval: Duration,
    /// Rows per DELETE.
    pub batch_rows: i64,
}

/// Why the prediction log could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database settings are unusable (Postgres being down is not an error).
    #[error(transparent)]
    Db(#[from] DbError),
    /// The spool directory cannot be used.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The log thread could not start.
    #[error("cannot start the prediction log thread")]
    Thread(#[from] background::SpawnError),
}

/// Postgres as the writer last found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbStatus {
    /// Connected, migrated, writing.
    Ok = 0,
    /// Not reachable (or not yet): rows are spooled.
    Down = 1,
}

/// Counters the writer and the request path share.
#[derive(Debug)]
pub struct Shared {
    status: AtomicU8,
    outcomes: [AtomicU64; 4],
    spool_bytes: AtomicU64,
    torn: AtomicU64,
    /// For rate-limiting the request path's drop log: when it last logged (ms since
    /// `born`), and the drops since.
    born: Instant,
    drop_logged_ms: AtomicU64,
    drops_unlogged: AtomicU64,
}

/// The request path logs dropped rows at most this often (with the count since).
const DROP_LOG_EVERY_MS: u64 = 1000;

impl Shared {
    fn new() -> Self {
        Self {
            status: AtomicU8::new(DbStatus::Down as u8),
            outcomes: Default::default(),
            spool_bytes: AtomicU64::new(0),
            torn: AtomicU64::new(0),
            born: Instant::now(),
            drop_logged_ms: AtomicU64::new(0),
            drops_unlogged: AtomicU64::new(0),
        }
    }

    /// Counts a row the request path could not hand over; logs an ERROR at most once a
    /// second, with how many were lost since the last one.
    fn dropped_at_submit(&self, reason: &'static str) {
        self.add(Outcome::Dropped, 1);
        self.drops_unlogged.fetch_add(1, Ordering::Relaxed);
        let now = self.born.elapsed().as_millis() as u64 + DROP_LOG_EVERY_MS;
        let last = self.drop_logged_ms.load(Ordering::Relaxed);
        if now >= last + DROP_LOG_EVERY_MS
            && self
                .drop_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let lost = self.drops_unlogged.swap(0, Ordering::Relaxed);
            tracing::error!(reason, rows = lost, "prediction log: ROWS LOST");
        }
    }

    /// Sets the status; true when it changed.
    fn set_status(&self, status: DbStatus) -> bool {
        self.status.swap(status as u8, Ordering::SeqCst) != status as u8
    }

    fn add(&self, outcome: Outcome, rows: u64) {
        self.outcomes[outcome as usize].fetch_add(rows, Ordering::Relaxed);
        metrics::counter!(LOG_ROWS_TOTAL, "outcome" => outcome.as_str()).increment(rows);
    }

    fn count_torn(&self) {
        self.torn.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(LOG_SPOOL_TORN_TOTAL).increment(1);
    }

    fn set_spool_bytes(&self, bytes: u64) {
        self.spool_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// A reading of the sink's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkCounters {
    pub written: u64,
    pub spooled: u64,
    pub replayed: u64,
    pub dropped: u64,
    pub queued: u64,
    pub spool_bytes: u64,
    pub torn_segments: u64,
}

/// The `/stats` reader: its own connection and the last reading.
struct Reader {
    client: Option<Client>,
    last: Option<(Instant, Option<DbCounts>)>,
    known: Option<DbCounts>,
}

impl Reader {
    /// The last attempt's counts (fresh), else the last ones ever read (stale).
    fn reading(&self) -> Option<(DbCounts, bool)> {
        let fresh = self.last.and_then(|(_, counts)| counts);
        fresh.map(|c| (c, true)).or(self.known.map(|c| (c, false)))
    }
}

/// The handle the gateway holds.
pub struct PredictionLog {
    tx: mpsc::Sender<LogRow>,
    shared: Arc<Shared>,
    runtime: Handle,
    connector: Connector,
    close: Mutex<Option<oneshot::Sender<Instant>>>,
    done: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    reader: tokio::sync::Mutex<Reader>,
    stats_cache: Duration,
}

/// Longest `/stats` waits for a fresh reading.
const STATS_TIMEOUT: Duration = Duration::from_millis(500);

impl PredictionLog {
    /// Opens the spool and starts the log thread. Never waits for Postgres: the gateway
    /// starts while it is down, and spools.
    pub fn start(cfg: PredictionLogSettings) -> Result<Arc<Self>, LogError> {
        let connector = Connector::new(&cfg.db)?;
        let spool = Spool::open_shared(&cfg.spool_dir, cfg.spool_max_bytes)?;
        if !spool.is_empty() {
            tracing::info!(
                dir = %cfg.spool_dir.display(),
                bytes = spool.bytes(),
                "prediction log: rows spooled by an earlier run will be replayed"
            );
        }
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (close_tx, close_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let shared = Arc::new(Shared::new());
        let writer = Writer::new(
            rx,
            close_rx,
            Arc::clone(&shared),
            connector.clone(),
            spool,
            cfg.writer.clone(),
        );
        let retention = cfg.retention.map(|r| (r, connector.clone()));
        let handle = background::spawn("infergate-log", move || async move {
            if let Some((r, connector)) = retention {
                tokio::spawn(retention_loop(r, connector));
            }
            writer.run().await;
            let _ = done_tx.send(());
        })?
        .runtime;
        Ok(Arc::new(Self {
            tx,
            shared,
            runtime: handle,
            connector,
            close: Mutex::new(Some(close_tx)),
            done: tokio::sync::Mutex::new(Some(done_rx)),
            reader: tokio::sync::Mutex::new(Reader {
                client: None,
                last: None,
                known: None,
            }),
            stats_cache: cfg.stats_cache,
        }))
    }

    /// Hands a row to the writer without waiting. A full queue (the writer cannot keep up
    /// even by spooling) or a closed log drops the row: counted, and logged (at most once
    /// a second, with the count).
    pub fn submit(&self, row: LogRow) {
        if let Err(e) = self.tx.try_send(row) {
            self.shared.dropped_at_submit(match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "log closed",
            });
        }
    }

    /// Postgres as the writer last found it.
    pub fn status(&self) -> DbStatus {
        match self.shared.status.load(Ordering::SeqCst) {
            0 => DbStatus::Ok,
            _ => DbStatus::Down,
        }
    }

    /// The sink's counters.
    pub fn counters(&self) -> SinkCounters {
        let o = |x: Outcome| self.shared.outcomes[x as usize].load(Ordering::Relaxed);
        SinkCounters {
            written: o(Outcome::Written),
            spooled: o(Outcome::Spooled),
            replayed: o(Outcome::Replayed),
            dropped: o(Outcome::Dropped),
            queued: (self.tx.max_capacity() - self.tx.capacity()) as u64,
            spool_bytes: self.shared.spool_bytes.load(Ordering::Relaxed),
            torn_segments: self.shared.torn.load(Ordering::Relaxed),
        }
    }

    /// Totals read from the table, at most `stats_cache` old; while Postgres cannot
    /// answer, the last reading (`fresh = false`), or `None` if there never was one.
    pub async fn db_counts(&self) -> Option<(DbCounts, bool)> {
        let mut reader = self.reader.lock().await;
        if let Some((at, _)) = reader.last
            && at.elapsed() < self.stats_cache
        {
            return reader.reading();
        }
        let client = reader.client.take().filter(|c| !c.is_closed());
        let connector = self.connector.clone();
        let query = self.runtime.spawn(async move {
            let client = match client {
                Some(c) => c,
                None => connector.connect().await?,
            };
            let counts = db::counts(&client).await?;
            Ok::<_, DbError>((client, counts))
        });
        let fresh = match tokio::time::timeout(STATS_TIMEOUT, query).await {
            Ok(Ok(Ok((client, counts)))) => {
                reader.client = Some(client);
                reader.known = Some(counts);
                Some(counts)
            }
            Ok(Ok(Err(e))) => {
                tracing::debug!(error = %e, "prediction log: /stats reading failed");
                None
            }
            _ => None,
        };
        reader.last = Some((Instant::now(), fresh));
        reader.reading()
    }

    /// Stops taking rows and writes what is queued — to Postgres if it takes it before
    /// `deadline`, else to the spool. Returns false if the writer did not finish in time.
    pub async fn close(&self, deadline: Instant) -> bool {
        let sender = self
            .close
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(deadline);
        }
        let Some(done) = self.done.lock().await.take() else {
            return true;
        };
        // The writer spools at `deadline - reserve`; give it a moment past the deadline
        // to finish the fsync.
        tokio::time::timeout_at(deadline + Duration::from_secs(2), done)
            .await
            .is_ok()
    }
}

async fn retention_loop(cfg: RetentionSettings, connector: Connector) {
    let mut client: Option<Client> = None;
    let mut tick = tokio::time::interval(cfg.interval);
    loop {
        tick.tick().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            client = connector.connect().await.ok();
        }
        let Some(c) = &client else { continue };
        let mut deleted = 0u64;
        loop {
            match db::delete_older_than(c, cfg.max_age, cfg.batch_rows).await {
                Ok(n) => {
                    deleted += n;
                    if (n as i64) < cfg.batch_rows {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "prediction log: retention delete failed");
                    client = None;
                    break;
                }
            }
            // Let writes in between batches.
            tokio::task::yield_now().await;
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                max_age_s = cfg.max_age.as_secs(),
                "prediction log: retention removed old rows"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn dropped_rows_are_all_counted_and_logged_at_most_once_a_second() {
        let shared = Shared::new();
        for _ in 0..3 {
            shared.dropped_at_submit("queue full");
        }
        assert_eq!(
            shared.outcomes[Outcome::Dropped as usize].load(Ordering::Relaxed),
            3
        );
        // The first drop was logged at once; two wait for the next log line.
        assert_eq!(shared.drops_unlogged.load(Ordering::Relaxed), 2);
        tokio::time::advance(Duration::from_millis(1001)).await;
        shared.dropped_at_submit("queue full");
        assert_eq!(
            shared.drops_unlogged.load(Ordering::Relaxed),
            0,
            "logged with the count"
        );
        assert_eq!(
            shared.outcomes[Outcome::Dropped as usize].load(Ordering::Relaxed),
            4
        );
    }
}
