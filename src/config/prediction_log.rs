//! The `[prediction_log]` section: the queue, batches, retries, spool and retention of the
//! log every prediction is written to.

use std::path::PathBuf;
use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::config::database::DatabaseSection;
use crate::prediction_log::writer::WriterSettings;
use crate::prediction_log::{PredictionLogSettings, RetentionSettings};

/// The prediction log: rows go from the request path through a bounded queue to COPY
/// batches into PostgreSQL, and to an on-disk spool while it is away.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct PredictionLogSection {
    /// Rows queued between the request path and the writer (the request never waits: a
    /// full queue drops the row, counted in `infergate_log_rows_total{outcome="dropped"}`).
    pub queue_capacity: usize,
    /// Rows per COPY batch: a batch is written when it has this many rows, or when its
    /// oldest row is `flush_interval_ms` old. A writer that fell behind writes up to 8
    /// batches at once before it spools.
    pub batch_rows: usize,
    /// Milliseconds a row waits for its batch to fill.
    pub flush_interval_ms: u64,
    /// Milliseconds one batch write may take before it counts as failed (its rows go to
    /// the spool).
    pub write_timeout_ms: u64,
    /// First wait between attempts while Postgres fails, ms; it doubles up to
    /// `retry_max_ms`.
    pub retry_initial_ms: u64,
    /// Longest wait between attempts while Postgres fails, ms.
    pub retry_max_ms: u64,
    /// Directory of the on-disk spool: rows wait here (append-only, fsync'd) while
    /// Postgres is away, and are replayed once it is back, also after a restart. A
    /// relative path is relative to the working directory: put it on a volume, one
    /// directory per replica (it is locked; a second process refuses to start).
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold; past it rows are dropped, counted and logged.
    pub spool_max_bytes: u64,
    /// Store the client's IP address with each row (off: NULL, for privacy).
    pub log_client_addr: bool,
    /// Milliseconds one /stats reading of the table is reused.
    pub stats_cache_ms: u64,
    /// Delete rows older than this many days; 0 keeps everything.
    pub retention_days: u32,
    /// Seconds between retention passes.
    pub retention_interval_s: u64,
    /// Rows per retention DELETE.
    pub retention_batch_rows: u32,
}

impl Default for PredictionLogSection {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_rows: 1000,
            flush_interval_ms: 200,
            write_timeout_ms: 10_000,
            retry_initial_ms: 100,
            retry_max_ms: 5000,
            spool_dir: PathBuf::from("spool"),
            spool_max_bytes: 1 << 30,
            log_client_addr: false,
            stats_cache_ms: 1000,
            retention_days: 0,
            retention_interval_s: 300,
            retention_batch_rows: 5000,
        }
    }
}

impl PredictionLogSection {
    /// The log's settings; `None` without a database to write to.
    pub fn settings(&self, database: &DatabaseSection) -> Option<PredictionLogSettings> {
        Some(PredictionLogSettings {
            db: database.settings()?,
            writer: WriterSettings {
                batch_rows: self.batch_rows,
                flush_interval: Duration::from_millis(self.flush_interval_ms),
                write_timeout: Duration::from_millis(self.write_timeout_ms),
                retry_initial: Duration::from_millis(self.retry_initial_ms),
                retry_max: Duration::from_millis(self.retry_max_ms),
                migrate: database.migrate_on_start,
            },
            queue_capacity: self.queue_capacity,
            spool_dir: self.spool_dir.clone(),
            spool_max_bytes: self.spool_max_bytes,
            stats_cache: Duration::from_millis(self.stats_cache_ms),
            retention: (self.retention_days > 0).then(|| RetentionSettings {
                max_age: Duration::from_secs(u64::from(self.retention_days) * 86_400),
                interval: Duration::from_secs(self.retention_interval_s),
                batch_rows: i64::from(self.retention_batch_rows),
            }),
        })
    }

    /// Checks ranges.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            self.queue_capacity >= 1,
            "prediction_log.queue_capacity",
            "must be at least 1",
        );
        checks.check(
            (1..=100_000).contains(&self.batch_rows),
            "prediction_log.batch_rows",
            "must be between 1 and 100000",
        );
        for (key, ms) in [
            ("prediction_log.flush_interval_ms", self.flush_interval_ms),
            ("prediction_log.write_timeout_ms", self.write_timeout_ms),
            ("prediction_log.retry_initial_ms", self.retry_initial_ms),
            ("prediction_log.stats_cache_ms", self.stats_cache_ms),
        ] {
            checks.check(ms >= 1, key, "must be at least 1 millisecond");
        }
        checks.check(
            self.retry_max_ms >= self.retry_initial_ms,
            "prediction_log.retry_max_ms",
            "must be at least prediction_log.retry_initial_ms",
        );
        checks.check(
            self.spool_max_bytes >= 1024 * 1024,
            "prediction_log.spool_max_bytes",
            "must be at least 1 MiB",
        );
        checks.check(
            self.retention_days == 0
                || (self.retention_interval_s >= 1 && self.retention_batch_rows >= 1),
            "prediction_log.retention_interval_s",
            "retention needs retention_interval_s and retention_batch_rows of at least 1",
        );
    }
}
