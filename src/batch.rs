//! Dynamic batching: distinct cache misses for one model are gathered and run as one
//! forward pass, and each waiter gets its own row back.
//!
//! The policy lives in [`BatchState`], a pure struct driven by explicit `now`s (tested with
//! paused time): a batch goes out as soon as it is full, or as soon as a compute slot is
//! free (so a lone request never waits), or when its oldest request has waited `max_wait`.
//! Under load, requests pile up while every slot is busy and leave together. The loop that
//! applies it ([`Batcher`]) runs on its own thread. Waiters nobody waits for any more, and
//! those whose deadline has passed, are dropped when a batch is assembled, never computed;
//! a batch whose every waiter has gone is withdrawn from the compute queue.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::background;
use crate::deadline::Stage;
use crate::infer::manifest::{InputKind, ModelInfo};
use crate::infer::model::{Batch, Model, ModelError};
use crate::infer::{Infer, InferError};
use crate::metrics::{BATCH_SIZE, WORK_CANCELLED_TOTAL};
use crate::stats::Stats;

/// Batching knobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Most rows in one forward pass; 1 disables batching.
    pub max_size: usize,
    /// Longest a request waits for company while every compute slot is busy.
    pub max_wait: Duration,
    /// Batches in flight at once (usually the compute thread count).
    pub max_in_flight: usize,
    /// Requests waiting to be batched; more are refused as overloaded.
    pub queue_capacity: usize,
}

/// Something waiting in a batch.
pub trait Waiter {
    /// Whether nobody wants the answer any more.
    fn is_cancelled(&self) -> bool;
    /// When its answer is due.
    fn deadline(&self) -> Instant;
}

/// Waiters dropped from a queue instead of being batched.
#[derive(Debug)]
pub struct Dropped<W> {
    /// Their deadline had passed: each is to be told so.
    pub expired: Vec<W>,
    /// Nobody waited for them any more.
    pub cancelled: usize,
}

impl<W> Default for Dropped<W> {
    fn default() -> Self {
        Self {
            expired: Vec::new(),
            cancelled: 0,
        }
    }
}

/// The batching policy for one model's queue.
#[derive(Debug)]
pub struct BatchState<W> {
    pending: VecDeque<(W, Instant)>,
    max_size: usize,
    max_wait: Duration,
    dropped: Dropped<W>,
}

impl<W: Waiter> BatchState<W> {
    /// An empty queue with these limits.
    pub fn new(max_size: usize, max_wait: Duration) -> Self {
        Self {
            pending: VecDeque::new(),
            max_size: max_size.max(1),
            max_wait,
            dropped: Dropped::default(),
        }
    }

    /// Queues a waiter that arrived at `now`.
    pub fn push(&mut self, waiter: W, now: Instant) {
        self.pending.push_back((waiter, now));
    }

    /// Waiters queued (cancelled ones included until they are met).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// When the oldest waiter's patience runs out.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.front().map(|(_, at)| *at + self.max_wait)
    }

    /// The next batch to run, if the policy says one should go now. `slot_free` says
    /// whether a compute slot is idle. Cancelled and expired waiters are dropped, never
    /// returned (see [`BatchState::take_dropped`]).
    pub fn take(&mut self, now: Instant, slot_free: bool) -> Option<Vec<W>> {
        self.purge(now);
        let first = self.pending.front()?;
        let due =
            self.pending.len() >= self.max_size || slot_free || now >= first.1 + self.max_wait;
        if !due {
            return None;
        }
        let n = self.pending.len().min(self.max_size);
        Some(self.pending.drain(..n).map(|(w, _)| w).collect())
    }

    /// Moves the cancelled and expired waiters out of the queue into `dropped`, in one
    /// pass; the queue is rebuilt only when there is something to drop.
    fn purge(&mut self, now: Instant) {
        let gone = |w: &W| w.is_cancelled() || now >= w.deadline();
        if !self.pending.iter().any(|(w, _)| gone(w)) {
            return;
        }
        let mut live = VecDeque::with_capacity(self.pending.len());
        for (w, at) in self.pending.drain(..) {
            if w.is_cancelled() {
                self.dropped.cancelled += 1;
            } else if now >= w.deadline() {
                self.dropped.expired.push(w);
            } else {
                live.push_back((w, at));
            }
        }
        self.pending = live;
    }

    /// The waiters [`BatchState::take`] dropped since the last call.
    pub fn take_dropped(&mut self) -> Dropped<W> {
        std::mem::take(&mut self.dropped)
    }
}

/// One row's answer: its class probabilities, and the batch's timings.
#[derive(Debug, Clone)]
pub struct RowAnswer {
    /// Probabilities for this row.
    pub probs: Vec<f32>,
    /// Rows in the forward pass that computed it.
    pub batch_size: usize,
    /// Time the batch waited for a compute thread.
    pub queue_wait: Duration,
    /// Time of the forward pass.
    pub compute: Duration,
}

/// What a waiter gets: its row, or the batch's shared failure.
pub type RowResult = Result<RowAnswer, Arc<InferError>>;

struct Job {
    model: Arc<dyn Model>,
    features: Vec<f32>,
    deadline: Instant,
    reply: oneshot::Sender<RowResult>,
}

impl Waiter for Job {
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Handle to the batching loop; cheap to share and to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    capacity: usize,
}

impl Batcher {
    /// Starts the batching thread in front of `infer`.
    pub fn start(
        infer: Arc<Infer>,
        stats: Arc<Stats>,
        cfg: BatchSettings,
    ) -> Result<Self, background::SpawnError> {
        let capacity = cfg.queue_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        background::spawn("infergate-batcher", move || run(rx, infer, stats, cfg))?;
        Ok(Self { tx, capacity })
    }

    /// Computes one row of `features` with `model`, batched with whatever else is waiting,
    /// unless `deadline` passes first ([`InferError::DeadlineExceeded`]). Dropping the
    /// future withdraws the row if its batch has not left yet.
    pub async fn predict(
        &self,
        model: &Arc<dyn Model>,
        features: Vec<f32>,
        deadline: Instant,
    ) -> RowResult {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            model: Arc::clone(model),
            features,
            deadline,
            reply,
        };
        self.tx.try_send(job).map_err(|e| {
            Arc::new(match e {
                mpsc::error::TrySendError::Full(_) => InferError::Overloaded {
                    capacity: self.capacity,
                },
                mpsc::error::TrySendError::Closed(_) => InferError::Stopped,
            })
        })?;
        answer.await.map_err(|_| Arc::new(InferError::Stopped))?
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    infer: Arc<Infer>,
    stats: Arc<Stats>,
    cfg: BatchSettings,
) {
    let mut queues: HashMap<ModelId, BatchState<Job>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut in_flight = 0usize;
    let max_in_flight = cfg.max_in_flight.max(1);
    loop {
        let deadline = queues.values().filter_map(BatchState::deadline).min();
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => enqueue(&mut queues, job, &cfg),
                None if in_flight == 0 => return,
                None => {}
            },
            Some(()) = done_rx.recv() => in_flight -= 1,
            () = sleep_until(deadline) => {}
        }
        // Take everything already queued before deciding, so a burst forms full batches.
        while let Ok(job) = rx.try_recv() {
            enqueue(&mut queues, job, &cfg);
        }
        let now = Instant::now();
        for state in queues.values_mut() {
            while let Some(jobs) = state.take(now, in_flight < max_in_flight) {
                in_flight += 1;
                stats.record_batch(jobs.len());
                let (infer, done) = (Arc::clone(&infer), done_tx.clone());
                tokio::spawn(async move {
                    run_batch(&infer, jobs).await;
                    let _ = done.send(());
                });
            }
            tell_dropped(state.take_dropped());
        }
        queues.retain(|_, s| !s.is_empty());
    }
}

/// One loaded model (one version of it): the batches of two versions of a model never
/// mix. Its queued jobs hold the model, so the address is not reused while it has a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ModelId(usize);

impl ModelId {
    fn of(model: &Arc<dyn Model>) -> Self {
        Self(Arc::as_ptr(model).cast::<()>() as usize)
    }
}

fn enqueue(queues: &mut HashMap<ModelId, BatchState<Job>>, job: Job, cfg: &BatchSettings) {
    let max_size = batch_limit(job.model.info(), cfg);
    queues
        .entry(ModelId::of(&job.model))
        .or_insert_with(|| BatchState::new(max_size, cfg.max_wait))
        .push(job, Instant::now());
}

/// Most rows in one batch for `info`'s model. An image model's own limit is
/// `image.max_batch_size`, chosen for the device it runs on (64 on a GPU, where a batch
/// costs little more than one image), so `batch.max_size`, sized for tabular rows, does not
/// cap it; `batch.max_size = 1` still turns batching off for every model.
fn batch_limit(info: &ModelInfo, cfg: &BatchSettings) -> usize {
    match (cfg.max_size, info.kind()) {
        (1, _) => 1,
        (_, InputKind::Image) => info.max_batch,
        (limit, _) => limit.min(info.max_batch),
    }
}

/// Answers the expired waiters and counts both kinds.
fn tell_dropped(dropped: Dropped<Job>) {
    if dropped.cancelled > 0 {
        metrics::counter!(WORK_CANCELLED_TOTAL, "stage" => "batch_queue")
            .increment(dropped.cancelled as u64);
    }
    if dropped.expired.is_empty() {
        return;
    }
    let e = Arc::new(InferError::DeadlineExceeded);
    for job in dropped.expired {
        Stage::BatchQueue.count();
        let _ = job.reply.send(Err(Arc::clone(&e)));
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn run_batch(infer: &Infer, mut jobs: Vec<Job>) {
    let Some(first) = jobs.first() else { return };
    let model = Arc::clone(&first.model);
    let features = model.info().row_len();
    let rows = jobs.len();
    let mut data = Vec::with_capacity(rows * features);
    for job in &jobs {
        data.extend_from_slice(&job.features);
    }
    // The batch is worth computing until its last row's deadline.
    let deadline = jobs.iter().map(|j| j.deadline).max();
    metrics::histogram!(BATCH_SIZE, "model" => model.info().name.clone()).record(rows as f64);
    let batch = Batch {
        rows,
        features,
        data,
    };
    let result = {
        let everyone_gone =
            futures_util::future::join_all(jobs.iter_mut().map(|j| j.reply.closed()));
        tokio::select! {
            result = infer.forward(&model, batch, deadline) => result,
            // Dropping the forward withdraws the batch from the compute queue, if no
            // thread has taken it yet (the thread counts it).
            _ = everyone_gone => return,
        }
    };
    match result {
        Ok(fwd) => {
            for (i, job) in jobs.into_iter().enumerate() {
                let _ = job.reply.send(Ok(RowAnswer {
                    probs: fwd.outputs.row(i).to_vec(),
                    batch_size: rows,
                    queue_wait: fwd.queue_wait,
                    compute: fwd.compute,
                }));
            }
        }
        // One row's input refused by the model fails the whole run; the rows are run
        // again one by one, so that only that row's client gets the refusal.
        Err(InferError::Model(ModelError::UnseenCategory(_))) if rows > 1 => {
            let alone = jobs
                .into_iter()
                .map(|job| Box::pin(run_batch(infer, vec![job])));
            futures_util::future::join_all(alone).await;
        }
        Err(e) => {
            let e = Arc::new(e);
            for job in jobs {
                let _ = job.reply.send(Err(Arc::clone(&e)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    struct W(u32, Rc<Cell<bool>>, Instant);

    impl Waiter for W {
        fn is_cancelled(&self) -> bool {
            self.1.get()
        }

        fn deadline(&self) -> Instant {
            self.2
        }
    }

    fn w(id: u32) -> W {
        W(
            id,
            Rc::new(Cell::new(false)),
            Instant::now() + Duration::from_secs(60),
        )
    }

    fn ids(batch: Option<Vec<W>>) -> Vec<u32> {
        batch
            .map(|b| b.iter().map(|w| w.0).collect())
            .unwrap_or_default()
    }

    #[test]
    fn image_models_batch_to_their_own_limit_and_the_rest_to_batch_max_size() {
        use crate::infer::image::ImageModelOptions;
        let settings = |max_size| BatchSettings {
            max_size,
            max_wait: Duration::from_millis(2),
            max_in_flight: 1,
            queue_capacity: 8,
        };
        let tabular = crate::infer::demo::load().unwrap();
        let image =
            crate::infer::demo::efficientnet_lite0::load(&ImageModelOptions::cpu(64)).unwrap();
        assert_eq!(
            batch_limit(image.info(), &settings(32)),
            64,
            "a GPU's 64 over 32"
        );
        assert_eq!(batch_limit(tabular.info(), &settings(32)), 32);
        assert_eq!(batch_limit(image.info(), &settings(1)), 1, "batching off");
        assert_eq!(batch_limit(tabular.info(), &settings(1)), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_goes_at_once_when_a_slot_is_free() {
        let mut s = BatchState::new(16, Duration::from_millis(2));
        s.push(w(1), Instant::now());
        assert_eq!(ids(s.take(Instant::now(), true)), [1]);
        assert!(s.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn while_busy_requests_gather_until_full_or_max_wait() {
        let mut s = BatchState::new(3, Duration::from_millis(2));
        let t0 = Instant::now();
        s.push(w(1), t0);
        s.push(w(2), t0);
        assert!(s.take(t0, false).is_none(), "busy, not full, not due");
        assert_eq!(s.deadline(), Some(t0 + Duration::from_millis(2)));
        s.push(w(3), t0);
        s.push(w(4), t0);
        assert_eq!(ids(s.take(t0, false)), [1, 2, 3], "full");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(s.take(Instant::now(), false).is_none());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(ids(s.take(Instant::now(), false)), [4], "max_wait reached");
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_waiters_are_skipped() {
        let mut s = BatchState::new(4, Duration::from_millis(2));
        let gone = w(2);
        let flag = Rc::clone(&gone.1);
        s.push(w(1), Instant::now());
        s.push(gone, Instant::now());
        s.push(w(3), Instant::now());
        flag.set(true);
        assert_eq!(ids(s.take(Instant::now(), true)), [1, 3]);
        assert_eq!(s.take_dropped().cancelled, 1);
        let mut only_gone = BatchState::new(4, Duration::ZERO);
        let g = w(9);
        g.1.set(true);
        only_gone.push(g, Instant::now());
        assert!(only_gone.take(Instant::now(), true).is_none());
        assert!(only_gone.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_waiters_are_dropped_at_assembly_and_handed_back() {
        let mut s = BatchState::new(4, Duration::from_millis(2));
        let soon = W(
            2,
            Rc::new(Cell::new(false)),
            Instant::now() + Duration::from_millis(5),
        );
        s.push(w(1), Instant::now());
        s.push(soon, Instant::now());
        s.push(w(3), Instant::now());
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(ids(s.take(Instant::now(), true)), [1, 3]);
        let dropped = s.take_dropped();
        assert_eq!(ids(Some(dropped.expired)), [2]);
        assert_eq!(dropped.cancelled, 0);
        assert_eq!(s.take_dropped().expired.len(), 0, "handed back once");
    }
}
