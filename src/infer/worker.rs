//! Compute threads: plain OS threads that take jobs from one bounded queue and run
//! `Model::forward`, so a slow batch never stalls an I/O thread.
//!
//! A panic inside a model is caught here and answered as [`InferError::Panicked`] for that
//! job only; the thread carries on with the next job.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Span;

use crate::deadline::Stage;
use crate::infer::model::{Batch, Model, Outputs};
use crate::infer::{Forwarded, InferError};
use crate::metrics::{
    INFERENCE_DURATION, INFERENCE_QUEUE_DEPTH, INFERENCE_QUEUE_WAIT, MODEL_FORWARDS_TOTAL,
    WORK_CANCELLED_TOTAL,
};

/// How many compute threads to run and how many jobs may wait for them.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Compute threads, at least 1.
    pub threads: usize,
    /// Jobs that may wait in the queue before submissions are refused.
    pub queue_capacity: usize,
}

struct Job {
    model: Arc<dyn Model>,
    batch: Batch,
    enqueued: Instant,
    deadline: Option<Instant>,
    span: Span,
    reply: oneshot::Sender<Result<Forwarded, InferError>>,
}

/// Handle to the compute threads; dropping it lets them finish queued jobs and exit.
pub struct ComputePool {
    tx: Sender<Job>,
    capacity: usize,
}

impl ComputePool {
    /// Spawns `cfg.threads` compute threads.
    pub fn start(cfg: &PoolSettings) -> std::io::Result<Self> {
        let capacity = cfg.queue_capacity.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(capacity);
        for i in 0..cfg.threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("infergate-compute-{i}"))
                .spawn(move || run_worker(&rx))?;
        }
        Ok(Self { tx, capacity })
    }

    /// Jobs waiting for a compute thread.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// Queues one job and waits for its outputs. A job still queued at `deadline` is
    /// dropped, never computed ([`InferError::DeadlineExceeded`]).
    pub async fn submit(
        &self,
        model: Arc<dyn Model>,
        batch: Batch,
        deadline: Option<Instant>,
    ) -> Result<Forwarded, InferError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            model,
            batch,
            enqueued: Instant::now(),
            deadline,
            span: Span::current(),
            reply,
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(InferError::Overloaded {
                    capacity: self.capacity,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(InferError::Stopped),
        }
        metrics::gauge!(INFERENCE_QUEUE_DEPTH).set(self.tx.len() as f64);
        answer.await.map_err(|_| InferError::Stopped)?
    }
}

fn run_worker(rx: &Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        metrics::gauge!(INFERENCE_QUEUE_DEPTH).set(rx.len() as f64);
        // The requester gave up (client gone, deadline passed): skip the work.
        if job.reply.is_closed() {
            metrics::counter!(WORK_CANCELLED_TOTAL, "stage" => "compute_queue").increment(1);
            continue;
        }
        if job.deadline.is_some_and(|at| Instant::now() >= at) {
            Stage::ComputeQueue.count();
            let _ = job.reply.send(Err(InferError::DeadlineExceeded));
            continue;
        }
        let _entered = job.span.enter();
        let queue_wait = job.enqueued.elapsed();
        let started = Instant::now();
        let result = run_forward(job.model.as_ref(), &job.batch);
        let compute = started.elapsed();
        let name = job.model.info().name.clone();
        metrics::counter!(MODEL_FORWARDS_TOTAL, "model" => name.clone()).increment(1);
        metrics::histogram!(INFERENCE_DURATION, "model" => name).record(compute.as_secs_f64());
        metrics::histogram!(INFERENCE_QUEUE_WAIT).record(queue_wait.as_secs_f64());
        let answer = result.map(|outputs| Forwarded {
            outputs,
            queue_wait,
            compute,
        });
        // A closed receiver means the requester left meanwhile; nothing to do.
        let _ = job.reply.send(answer);
    }
}

fn run_forward(model: &dyn Model, batch: &Batch) -> Result<Outputs, InferError> {
    match catch_unwind(AssertUnwindSafe(|| model.forward(batch))) {
        Ok(result) => result.map_err(InferError::from),
        Err(payload) => {
            let message = crate::panic_message::of(&*payload);
            tracing::error!(%message, "model panicked; the compute thread carries on");
            Err(InferError::Panicked(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::infer::manifest::ModelInfo;
    use crate::infer::model::ModelError;

    /// A model that reports each call, waits for permission, and panics on a NaN input.
    struct Gated {
        info: ModelInfo,
        started: tokio::sync::mpsc::UnboundedSender<()>,
        gate: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl Model for Gated {
        fn info(&self) -> &ModelInfo {
            &self.info
        }

        fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
            let _ = self.started.send(());
            if let Ok(gate) = self.gate.lock() {
                let _ = gate.recv();
            }
            assert!(!batch.data[0].is_nan(), "NaN reached the model");
            Ok(Outputs {
                rows: batch.rows,
                classes: 1,
                probs: vec![1.0; batch.rows],
            })
        }
    }

    fn info() -> ModelInfo {
        crate::infer::demo::load()
            .expect("bundled model")
            .info()
            .clone()
    }

    fn batch(x: f32) -> Batch {
        Batch {
            rows: 1,
            features: 1,
            data: vec![x],
        }
    }

    #[tokio::test]
    async fn full_queue_is_refused_at_once_and_panics_stay_with_their_job() {
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let (open, gate) = std::sync::mpsc::channel();
        let model: Arc<dyn Model> = Arc::new(Gated {
            info: info(),
            started: started_tx,
            gate: Mutex::new(gate),
        });
        let pool = Arc::new(
            ComputePool::start(&PoolSettings {
                threads: 1,
                queue_capacity: 1,
            })
            .unwrap(),
        );
        let first = tokio::spawn({
            let (pool, model) = (Arc::clone(&pool), Arc::clone(&model));
            async move { pool.submit(model, batch(f32::NAN), None).await }
        });
        started.recv().await.unwrap(); // the only thread is busy with `first`
        let second = tokio::spawn({
            let (pool, model) = (Arc::clone(&pool), Arc::clone(&model));
            async move { pool.submit(model, batch(1.0), None).await }
        });
        while pool.queue_depth() < 1 {
            tokio::task::yield_now().await;
        }
        let third = pool.submit(Arc::clone(&model), batch(2.0), None).await;
        assert!(
            matches!(third, Err(InferError::Overloaded { capacity: 1 })),
            "{third:?}"
        );

        open.send(()).unwrap();
        let first = first.await.unwrap();
        assert!(
            matches!(first, Err(InferError::Panicked(ref m)) if m.contains("NaN")),
            "{first:?}"
        );
        open.send(()).unwrap();
        let second = second.await.unwrap().unwrap();
        assert_eq!(second.outputs.probs, vec![1.0]);
    }
}
