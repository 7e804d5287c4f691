//! The writer loop, on the log thread: takes rows off the queue, batches them by size or
//! age, writes each batch to Postgres, and spools to disk whatever Postgres cannot take —
//! while it is down, slow (a write in flight and rows piling up), or when the drain
//! deadline is near. Spooled rows are replayed, oldest segment first, as soon as Postgres
//! answers again, taking turns with new batches so neither starves. A writer that fell
//! behind writes larger batches (COPY is cheaper per row in bulk) before it spools.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::Client;

use crate::metrics::{LOG_FLUSH_DURATION, LOG_QUEUE_DEPTH, LOG_SPOOL_BYTES};
use crate::prediction_log::db::{self, Connector, DbError};
use crate::prediction_log::flush::{Backoff, Pending};
use crate::prediction_log::record::{LogRow, Record};
use crate::prediction_log::spool::{self, Segment, Spool, SpoolError};
use crate::prediction_log::{DbStatus, Shared};

/// The writer's knobs.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Rows per COPY batch.
    pub batch_rows: usize,
    /// Longest a row waits for its batch.
    pub flush_interval: Duration,
    /// Longest one write (connect, COPY, commit) may take before it counts as failed.
    pub write_timeout: Duration,
    /// First and longest wait between attempts while Postgres fails.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Apply migrations on every (re)connect.
    pub migrate: bool,
}

/// Rows a write carries, kept here too so a write that is cut off can still be spooled.
enum Job {
    Connect,
    Direct(Arc<Vec<Record>>),
    Replay(Segment, Arc<Vec<Record>>),
}

type Flight = Pin<Box<dyn Future<Output = (Option<Client>, Result<u64, DbError>)>>>;

/// State of the writer loop.
pub struct Writer {
    rx: mpsc::Receiver<LogRow>,
    close: Option<oneshot::Receiver<Instant>>,
    shared: Arc<Shared>,
    connector: Connector,
    client: Option<Client>,
    spool: Spool,
    pending: Pending<Record>,
    backoff: Backoff,
    cfg: WriterSettings,
    /// Whether the spool's cap was hit (logged once per episode).
    spool_full: bool,
    /// Whether the spool goes next (replay and new batches take turns).
    replay_turn: bool,
}

/// Time kept back before the drain deadline to spool what could not be written.
const SPOOL_RESERVE: Duration = Duration::from_millis(300);
/// How often an idle writer checks that its connection is alive.
const LIVENESS: Duration = Duration::from_secs(1);
/// How often a writer leaving rows in the queue checks how full it is.
const BACKLOG_RECHECK: Duration = Duration::from_millis(5);
/// Rows wait in memory behind a write in flight up to this many batches (and the next
/// write takes them all); beyond that, they are spooled.
const PENDING_BATCHES: usize = 8;

impl Writer {
    /// A writer taking rows from `rx` until `close` says by when to be done, writing
    /// through `connector` (or to `spool` while Postgres is away) and publishing its state
    /// in `shared`.
    pub fn new(
        rx: mpsc::Receiver<LogRow>,
        close: oneshot::Receiver<Instant>,
        shared: Arc<Shared>,
        connector: Connector,
        spool: Spool,
        cfg: WriterSettings,
    ) -> Self {
        Self {
            rx,
            close: Some(close),
            shared,
            connector,
            client: None,
            spool,
            pending: Pending::new(cfg.batch_rows, cfg.flush_interval),
            backoff: Backoff::new(cfg.retry_initial, cfg.retry_max),
            cfg,
            spool_full: false,
            replay_turn: false,
        }
    }

    /// Runs until closed and drained: every row received is in Postgres or the spool.
    pub async fn run(mut self) {
        self.publish_spool();
        let mut flight: Option<(Job, Flight)> = None;
        let mut deadline: Option<Instant> = None;
        let mut rx_open = true;
        loop {
            let now = Instant::now();
            if let Some(client) = &self.client
                && client.is_closed()
            {
                self.client = None;
                self.went_down("connection closed");
            }
            if flight.is_none() {
                flight = self.next_job(now, deadline.is_some());
            }
            // While a write is in flight and PENDING_BATCHES wait behind it, the queue is
            // the buffer: rows are left in it. Rows go to the spool when Postgres is in
            // backoff, or when the queue is three quarters full (before it would drop).
            let max_pending = PENDING_BATCHES * self.cfg.batch_rows;
            let backlog = flight.is_some() && self.pending.len() >= max_pending;
            let queue_high = self.queue_depth() * 4 >= self.rx.max_capacity() * 3;
            if !self.backoff.ready(now) && self.pending.is_due(now) {
                let rows = self.pending.take_all();
                self.spool_rows(rows);
            } else if backlog && queue_high {
                let rows = self.pending.take_up_to(max_pending, now);
                self.spool_rows(rows);
            }
            let pull = rx_open && (!backlog || queue_high);
            if deadline.is_some() && !rx_open && flight.is_none() {
                // Closing: whatever could not be written goes to the spool.
                let rest = self.pending.take_all();
                self.spool_rows(rest);
                break;
            }
            let wake = [
                self.pending.due_at(),
                self.backoff.retry_at(),
                deadline.map(|d| d - SPOOL_RESERVE),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + LIVENESS)
            .min(now + if pull { LIVENESS } else { BACKLOG_RECHECK });
            let write_until = match deadline {
                Some(d) => (d - SPOOL_RESERVE).min(now + self.cfg.write_timeout),
                None => now + self.cfg.write_timeout,
            };
            let close_pending = self.close.is_some();
            let close_rx = &mut self.close;
            let rx = &mut self.rx;
            let in_flight = flight.is_some();
            let flight_ref = &mut flight;
            tokio::select! {
                biased;
                close = async {
                    match close_rx.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                }, if close_pending => {
                    self.close = None;
                    let at = close.unwrap_or_else(|_| Instant::now());
                    deadline = Some(at);
                    self.rx.close();
                    tracing::info!(pending = self.pending.len(), queued = self.rx.len(), "prediction log: draining");
                }
                out = async {
                    match flight_ref.as_mut() {
                        Some((_, fut)) => tokio::time::timeout_at(write_until, fut).await,
                        None => std::future::pending().await,
                    }
                }, if in_flight => {
                    let Some((job, _)) = flight.take() else { continue };
                    self.finished(job, out);
                }
                row = rx.recv(), if pull => match row {
                    Some(row) => {
                        self.pending.push(Record::from_row(row), Instant::now());
                        // Take whatever else is queued without going round the loop.
                        while self.pending.len() < self.cfg.batch_rows {
                            match self.rx.try_recv() {
                                Ok(row) => self.pending.push(Record::from_row(row), Instant::now()),
                                Err(_) => break,
                            }
                        }
                        metrics::gauge!(LOG_QUEUE_DEPTH).set(self.queue_depth() as f64);
                    }
                    None => {
                        rx_open = false;
                        metrics::gauge!(LOG_QUEUE_DEPTH).set(0.0);
                    }
                },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        self.publish_spool();
        tracing::info!(
            spooled_bytes = self.spool.bytes(),
            "prediction log: drained"
        );
    }

    /// Rows waiting in the queue.
    fn queue_depth(&self) -> usize {
        self.rx.len()
    }

    /// The next thing to do with Postgres, if any may be done now.
    fn next_job(&mut self, now: Instant, closing: bool) -> Option<(Job, Flight)> {
        if !self.backoff.ready(now) {
            return None;
        }
        if self.client.is_none() {
            // Connect even with nothing to write, so /ready tells the truth.
            if closing && self.pending.is_empty() {
                return None;
            }
            return Some((Job::Connect, self.flight(Arc::new(Vec::new()))));
        }
        let batch_due = self.pending.is_due(now) || (closing && !self.pending.is_empty());
        let replay = !self.spool.is_empty() && (self.replay_turn || !batch_due);
        if replay {
            self.replay_turn = false;
            return self.replay_job();
        }
        if batch_due {
            // Spooled rows go next, whatever arrives meanwhile.
            self.replay_turn = true;
            let records = Arc::new(
                self.pending
                    .take_up_to(PENDING_BATCHES * self.cfg.batch_rows, now),
            );
            let flight = self.flight(Arc::clone(&records));
            return Some((Job::Direct(records), flight));
        }
        None
    }

    fn replay_job(&mut self) -> Option<(Job, Flight)> {
        let segment = self.spool.oldest()?;
        let records = match spool::read_segment(&segment.path) {
            Ok(contents) => {
                if let Some(torn) = &contents.torn {
                    tracing::warn!(
                        segment = %segment.path.display(),
                        offset = torn.offset,
                        discarded_bytes = torn.discarded_bytes,
                        reason = torn.reason,
                        replayed = contents.records.len(),
                        "prediction log: spool segment ends in a torn or corrupt record; \
                         replaying the intact records before it"
                    );
                    self.shared.count_torn();
                }
                contents.records
            }
            Err(e) => {
                tracing::error!(error = %e, "prediction log: cannot read a spool segment; setting it aside");
                let _ = self.spool.reject(&segment);
                return None;
            }
        };
        let records = Arc::new(records);
        let flight = self.flight(Arc::clone(&records));
        Some((Job::Replay(segment, records), flight))
    }

    /// A write of `records` (connecting first when needed) as a future owning what it uses.
    fn flight(&mut self, records: Arc<Vec<Record>>) -> Flight {
        let client = self.client.take();
        let connector = self.connector.clone();
        let migrate = self.cfg.migrate;
        Box::pin(async move {
            let mut client = match client {
                Some(c) => c,
                None => match connect(&connector, migrate).await {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            if records.is_empty() {
                return (Some(client), Ok(0));
            }
            let started = Instant::now();
            let result = db::write_batch(&mut client, &records).await;
            metrics::histogram!(LOG_FLUSH_DURATION).record(started.elapsed().as_secs_f64());
            (Some(client), result)
        })
    }

    fn finished(
        &mut self,
        job: Job,
        out: Result<(Option<Client>, Result<u64, DbError>), tokio::time::error::Elapsed>,
    ) {
        let (client, result) = match out {
            Ok(done) => done,
            Err(_) => (None, Err(DbError::Timeout(self.cfg.write_timeout))),
        };
        match result {
            Ok(inserted) => {
                self.client = client;
                self.backoff.succeeded();
                if self.shared.set_status(DbStatus::Ok) {
                    tracing::info!("prediction log: postgres is up");
                }
                match job {
                    Job::Connect => {}
                    Job::Direct(records) => {
                        self.shared.add(Outcome::Written, records.len() as u64);
                        if (inserted as usize) < records.len() {
                            tracing::debug!(
                                skipped = records.len() - inserted as usize,
                                "prediction log: rows already stored"
                            );
                        }
                    }
                    Job::Replay(segment, records) => {
                        self.shared.add(Outcome::Replayed, records.len() as u64);
                        if let Err(e) = self.spool.remove(&segment) {
                            tracing::error!(error = %e, "prediction log: replayed segment not deleted (its rows will be skipped next time)");
                        }
                        tracing::info!(
                            rows = records.len(),
                            inserted,
                            left_bytes = self.spool.bytes(),
                            "prediction log: replayed a spool segment"
                        );
                        self.publish_spool();
                    }
                }
            }
            Err(e) if !e.is_retriable() => {
                // The connection is fine; the rows are not.
                self.client = client;
                match job {
                    Job::Connect => self.went_down(&e.to_string()),
                    Job::Direct(records) => {
                        // Keep them for an operator rather than retry forever.
                        match self.spool.set_aside(&records) {
                            Ok(path) => {
                                tracing::error!(error = %e, rows = records.len(), kept = %path.display(), "prediction log: postgres refuses these rows; set aside")
                            }
                            Err(io) => {
                                self.shared.add(Outcome::Dropped, records.len() as u64);
                                tracing::error!(error = %e, io_error = %io, rows = records.len(), "prediction log: ROWS LOST: postgres refuses them and they cannot be set aside");
                            }
                        }
                    }
                    Job::Replay(segment, _) => self.reject(&segment, &e),
                }
            }
            Err(e) => {
                // Connection trouble or timeout: reconnect next time.
                drop(client);
                self.went_down(&e.to_string());
                if let Job::Direct(records) = job {
                    self.spool_rows(records.to_vec());
                }
            }
        }
    }

    fn reject(&mut self, segment: &Segment, e: &DbError) {
        match self.spool.reject(segment) {
            Ok(to) => {
                tracing::error!(error = %e, kept = %to.display(), "prediction log: postgres refuses these rows; segment set aside")
            }
            Err(io) => {
                tracing::error!(error = %e, io_error = %io, "prediction log: postgres refuses these rows and the segment cannot be moved")
            }
        }
        self.publish_spool();
    }

    fn went_down(&mut self, why: &str) {
        let wait = self.backoff.failed(Instant::now());
        if self.shared.set_status(DbStatus::Down) {
            tracing::warn!(
                error = why,
                retry_in_ms = wait.as_millis() as u64,
                "prediction log: postgres is down; spooling rows to disk"
            );
        } else {
            tracing::debug!(
                error = why,
                retry_in_ms = wait.as_millis() as u64,
                "prediction log: postgres still down"
            );
        }
    }

    fn spool_rows(&mut self, rows: Vec<Record>) {
        if rows.is_empty() {
            return;
        }
        let n = rows.len() as u64;
        match self.spool.append(&rows) {
            Ok(()) => {
                self.spool_full = false;
                self.shared.add(Outcome::Spooled, n);
            }
            Err(e) => {
                self.shared.add(Outcome::Dropped, n);
                if matches!(e, SpoolError::Full { .. }) && self.spool_full {
                    tracing::debug!(rows = n, "prediction log: spool still full; rows dropped");
                } else {
                    tracing::error!(error = %e, rows = n, "prediction log: ROWS LOST: cannot spool them (raise prediction_log.spool_max_bytes or free the disk)");
                }
                self.spool_full = matches!(e, SpoolError::Full { .. });
            }
        }
        self.publish_spool();
    }

    fn publish_spool(&self) {
        let bytes = self.spool.bytes();
        self.shared.set_spool_bytes(bytes);
        metrics::gauge!(LOG_SPOOL_BYTES).set(bytes as f64);
    }
}

async fn connect(connector: &Connector, migrate: bool) -> Result<Client, DbError> {
    let mut client = connector.connect().await?;
    if migrate {
        crate::prediction_log::schema::migrate(&mut client).await?;
    }
    db::prepare_staging(&client).await?;
    Ok(client)
}

/// Where logged rows went, for `infergate_log_rows_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Written = 0,
    Spooled = 1,
    Replayed = 2,
    Dropped = 3,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Written => "written",
            Self::Spooled => "spooled",
            Self::Replayed => "replayed",
            Self::Dropped => "dropped",
        }
    }
}
