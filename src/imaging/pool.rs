//! The decode threads: plain OS threads that take closures from one bounded queue, so that
//! decoding an upload never runs on an I/O thread. A full queue is an answer at once, never
//! a wait; a panic is caught and answered for that job only.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run to completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The queue is full.
    #[error("the decode queue is full ({capacity} waiting)")]
    Overloaded { capacity: usize },
    /// The threads are gone.
    #[error("the decode threads have stopped")]
    Stopped,
    /// The job panicked; its thread carried on.
    #[error("the job panicked: {0}")]
    Panicked(String),
}

/// Handle to the decode threads; dropping it lets them finish queued jobs and exit.
pub struct DecodePool {
    tx: Sender<Job>,
    capacity: usize,
}

impl DecodePool {
    /// Spawns `threads` (at least one) threads behind a queue of `capacity` jobs.
    pub fn start(threads: usize, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(capacity);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("infergate-decode-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })?;
        }
        Ok(Self { tx, capacity })
    }

    /// Runs `f` on a decode thread and returns its result. A job whose caller has gone
    /// (the future was dropped) before a thread took it is skipped.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            if reply.is_closed() {
                return;
            }
            let outcome = catch_unwind(AssertUnwindSafe(f))
                .map_err(|payload| PoolError::Panicked(crate::panic_message::of(&*payload)));
            let _ = reply.send(outcome);
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(PoolError::Overloaded {
                    capacity: self.capacity,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Stopped),
        }
        answer.await.map_err(|_| PoolError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_come_back_panics_stay_with_their_job_and_a_full_queue_is_refused() {
        let pool = std::sync::Arc::new(DecodePool::start(1, 1).unwrap());
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        let panicked = pool.run(|| -> u8 { panic!("bad image") }).await;
        assert_eq!(panicked, Err(PoolError::Panicked("bad image".into())));
        assert_eq!(pool.run(|| 1).await, Ok(1), "the thread survived");

        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = std::sync::Arc::clone(&pool);
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = gate.recv();
                })
                .await
            }
        });
        started.recv().await.unwrap();
        let queued = tokio::spawn({
            let pool = std::sync::Arc::clone(&pool);
            async move { pool.run(|| ()).await }
        });
        while pool.tx.is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            pool.run(|| ()).await,
            Err(PoolError::Overloaded { capacity: 1 })
        );
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(()));
        assert_eq!(queued.await.unwrap(), Ok(()));
    }
}
