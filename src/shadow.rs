//! Shadow mirroring, a side path: a request the catalog picked for mirroring is, after its
//! answer is ready, also run by the model's candidate version on this runner's own thread,
//! and the two outputs are compared (top-1 agreement, largest probability difference) into
//! metrics and the request's log row. The client's answer never waits for any of it: the
//! request path hands a job over with one `try_send`.
//!
//! The log row of a mirrored request travels with its job and is submitted by the runner
//! with the comparison (or without one when the candidate fails, times out, or the drain
//! comes first), so a row is never lost to mirroring.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::background;
use crate::batch::Batcher;
use crate::imaging::Imaging;
use crate::imaging::decode::Format;
use crate::infer::manifest::{InputSpec, Task};
use crate::infer::model::Model;
use crate::metrics::{SHADOW_COMPARISONS_TOTAL, SHADOW_MAX_PROB_DELTA, SHADOW_REQUESTS_TOTAL};
use crate::prediction_log::PredictionLog;
use crate::prediction_log::record::{LogRow, ShadowDiff};

/// What the candidate is run on: the request's input as the client sent it.
#[derive(Debug, Clone)]
pub enum ShadowInput {
    /// The decoded feature vector.
    Features(Vec<f32>),
    /// The upload (decoded and preprocessed as the candidate's manifest says).
    Image { bytes: Bytes, format: Format },
}

/// One mirrored request.
pub struct ShadowJob {
    /// The candidate version.
    pub candidate: Arc<dyn Model>,
    /// The version that answered.
    pub primary_version: Arc<str>,
    /// The answer's class probabilities.
    pub primary_probs: Arc<[f32]>,
    /// The input.
    pub input: ShadowInput,
    /// The answer's log row, submitted once the comparison is known (or given up).
    pub row: Option<LogRow>,
}

/// How one candidate's output compares with the answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Whether the two top classes are the same; `None` for regressors, which have none.
    pub top1_agree: Option<bool>,
    /// The largest absolute difference between two probabilities of one class (for
    /// regressors: between the two values).
    pub max_delta: f32,
}

/// Compares the answer's output with the candidate's, both of `task`; `None` when they
/// are not over the same classes.
pub fn compare(task: Task, primary: &[f32], candidate: &[f32]) -> Option<Comparison> {
    if primary.len() != candidate.len() || primary.is_empty() {
        return None;
    }
    let top = |p: &[f32]| crate::encode::ranked(p).first().copied();
    let max_delta = primary
        .iter()
        .zip(candidate)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    Some(Comparison {
        top1_agree: (task == Task::Classification).then(|| top(primary) == top(candidate)),
        max_delta,
    })
}

/// The runner's bounds (`[shadow]`); past them a request is not mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowSettings {
    /// Mirrored requests waiting for the runner.
    pub queue_capacity: usize,
    /// Mirrored requests computed at once.
    pub max_in_flight: usize,
    /// Longest a mirrored computation may take before it is given up.
    pub timeout: Duration,
}

/// The handle the request path mirrors through; one per process.
pub struct Shadow {
    tx: mpsc::Sender<ShadowJob>,
    closing: watch::Sender<bool>,
    done: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
    log: Option<Arc<PredictionLog>>,
}

impl Shadow {
    /// Starts the runner thread, which computes through `batcher` (beside everyone else's
    /// rows) and `imaging` (for images), and hands every row to `log`.
    pub fn start(
        batcher: Batcher,
        imaging: Option<Arc<Imaging>>,
        log: Option<Arc<PredictionLog>>,
        cfg: &ShadowSettings,
    ) -> Result<Self, background::SpawnError> {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let (closing, closing_rx) = watch::channel(false);
        let (done_tx, done) = oneshot::channel();
        let runner = Runner {
            batcher,
            imaging,
            log: log.clone(),
            max_in_flight: cfg.max_in_flight.max(1),
            in_flight: Arc::new(AtomicUsize::new(0)),
            timeout: cfg.timeout,
        };
        background::spawn("infergate-shadow", move || async move {
            runner.run(rx, closing_rx).await;
            let _ = done_tx.send(());
        })?;
        Ok(Self {
            tx,
            closing,
            done: std::sync::Mutex::new(Some(done)),
            log,
        })
    }

    /// Hands `job` to the runner without waiting. A full queue (or a stopped runner) is
    /// counted as `dropped`, and the row goes to the log at once.
    pub fn mirror(&self, job: ShadowJob) {
        if let Err(e) = self.tx.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            count(&job, "dropped");
            submit(self.log.as_deref(), job.row);
        }
    }

    /// Stops mirroring: every queued and running job submits its row (without a
    /// comparison if it had none yet). Resolves once the runner is done, or at `deadline`.
    pub async fn close(&self, deadline: tokio::time::Instant) -> bool {
        let _ = self.closing.send(true);
        let done = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match done {
            Some(done) => tokio::time::timeout_at(deadline, done).await.is_ok(),
            None => true,
        }
    }
}

fn count(job: &ShadowJob, outcome: &'static str) {
    let info = job.candidate.info();
    metrics::counter!(
        SHADOW_REQUESTS_TOTAL,
        "model" => info.name.clone(),
        "candidate" => info.version.clone(),
        "outcome" => outcome
    )
    .increment(1);
}

fn submit(log: Option<&PredictionLog>, row: Option<LogRow>) {
    if let (Some(log), Some(row)) = (log, row) {
        log.submit(row);
    }
}

/// The runner's thread: jobs in, comparisons out.
struct Runner {
    batcher: Batcher,
    imaging: Option<Arc<Imaging>>,
    log: Option<Arc<PredictionLog>>,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    timeout: Duration,
}

impl Runner {
    async fn run(self, mut rx: mpsc::Receiver<ShadowJob>, mut closing: watch::Receiver<bool>) {
        let runner = Arc::new(self);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                job = rx.recv() => {
                    let Some(job) = job else { break };
                    if runner.in_flight.load(Ordering::Relaxed) >= runner.max_in_flight {
                        count(&job, "busy");
                        submit(runner.log.as_deref(), job.row);
                        continue;
                    }
                    runner.in_flight.fetch_add(1, Ordering::Relaxed);
                    let (runner, closing) = (Arc::clone(&runner), closing.clone());
                    tasks.spawn(async move {
                        runner.mirror(job, closing).await;
                        runner.in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = closing.changed() => break,
            }
        }
        // The drain: what is queued is not mirrored, but its rows are written.
        rx.close();
        while let Ok(job) = rx.try_recv() {
            count(&job, "dropped");
            submit(runner.log.as_deref(), job.row);
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Runs the candidate, compares, records, and submits the row.
    async fn mirror(&self, mut job: ShadowJob, mut closing: watch::Receiver<bool>) {
        // A candidate loaded on demand is run only while in memory: its load (asked for
        // now) never delays anything, and until it is done the job is skipped, and counted.
        if let Some(handle) = job.candidate.on_demand() {
            match handle.try_resident() {
                Some(model) => job.candidate = model,
                None => {
                    count(&job, "not_loaded");
                    submit(self.log.as_deref(), job.row.take());
                    return;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let outcome = tokio::select! {
            probs = tokio::time::timeout_at(deadline, self.candidate_probs(&job, deadline)) => {
                match probs {
                    Ok(Some(probs)) => {
                        compare(job.candidate.info().task, &job.primary_probs, &probs)
                    }
                    Ok(None) => None,
                    Err(_) => {
                        count(&job, "timeout");
                        submit(self.log.as_deref(), job.row.take());
                        return;
                    }
                }
            }
            _ = closing.wait_for(|closing| *closing) => {
                count(&job, "dropped");
                submit(self.log.as_deref(), job.row.take());
                return;
            }
        };
        let Some(cmp) = outcome else {
            count(&job, "failed");
            submit(self.log.as_deref(), job.row.take());
            return;
        };
        count(&job, "compared");
        let info = job.candidate.info();
        let labels = [
            ("model", info.name.to_string()),
            ("primary", job.primary_version.to_string()),
            ("candidate", info.version.to_string()),
        ];
        let top1 = match cmp.top1_agree {
            Some(true) => "agree",
            Some(false) => "disagree",
            None => "none",
        };
        let mut with_top1 = labels.to_vec();
        with_top1.push(("top1", top1.to_owned()));
        metrics::counter!(SHADOW_COMPARISONS_TOTAL, &with_top1).increment(1);
        metrics::histogram!(SHADOW_MAX_PROB_DELTA, &labels).record(f64::from(cmp.max_delta));
        if let Some(mut row) = job.row.take() {
            row.shadow = Some(ShadowDiff {
                version: info.version.to_string(),
                top1_agree: cmp.top1_agree,
                max_delta: cmp.max_delta,
            });
            submit(self.log.as_deref(), Some(row));
        }
    }

    /// The candidate's probabilities for the job's input; `None` (logged at debug) when
    /// it cannot compute them.
    async fn candidate_probs(
        &self,
        job: &ShadowJob,
        deadline: tokio::time::Instant,
    ) -> Option<Vec<f32>> {
        let info = job.candidate.info();
        let row = match (&job.input, &info.input) {
            (ShadowInput::Features(features), InputSpec::Features { names })
                if features.len() == names.len() =>
            {
                features.clone()
            }
            (ShadowInput::Image { bytes, format }, InputSpec::Image(preprocess)) => {
                let imaging = self.imaging.as_ref()?;
                match imaging.prepare(bytes.clone(), *format, *preprocess).await {
                    Ok(prepared) => prepared.tensor,
                    Err(e) => {
                        tracing::debug!(error = %e, "shadow: the candidate's preprocessing failed");
                        return None;
                    }
                }
            }
            _ => {
                tracing::debug!(
                    model = %info.name,
                    candidate = %info.version,
                    "shadow: the candidate takes another input than the answering version"
                );
                return None;
            }
        };
        match self.batcher.predict(&job.candidate, row, deadline).await {
            // A candidate that computes no number fails the comparison.
            Ok(row) if row.probs.iter().all(|p| p.is_finite()) => Some(row.probs),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "shadow: the candidate failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_say_top1_agreement_and_the_largest_difference() {
        let classes = Task::Classification;
        let same = compare(classes, &[0.1, 0.7, 0.2], &[0.2, 0.6, 0.2]).unwrap();
        assert_eq!(same.top1_agree, Some(true));
        assert!((same.max_delta - 0.1).abs() < 1e-6);
        let other = compare(classes, &[0.1, 0.7, 0.2], &[0.8, 0.1, 0.1]).unwrap();
        assert_eq!(other.top1_agree, Some(false));
        assert!((other.max_delta - 0.7).abs() < 1e-6);
        assert_eq!(compare(classes, &[0.5, 0.5], &[1.0]), None);
        assert_eq!(compare(classes, &[], &[]), None);
        // Regressors: no top class, the absolute difference of the values.
        let values = compare(Task::Regression, &[151.5], &[149.0]).unwrap();
        assert_eq!(values.top1_agree, None);
        assert!((values.max_delta - 2.5).abs() < 1e-6);
    }
}
