//! Inference core: the model registry and the handle request code calls to run a model.
//!
//! Models run on dedicated compute threads ([`worker`]), fed by one bounded queue; an I/O
//! thread only enqueues a job and awaits its answer. This module knows nothing of HTTP.

pub mod cnn;
pub mod delayed;
pub mod demo;
pub mod image;
pub mod manifest;
pub mod model;
pub mod tabular;
pub mod train;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::infer::manifest::InputKind;
use crate::infer::model::{Batch, Model, ModelError, Outputs};
use crate::infer::worker::{ComputePool, PoolConfig};

/// Why an inference did not produce outputs.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// No loaded model has that name.
    #[error("no model named {name:?}; loaded: {loaded}")]
    UnknownModel { name: String, loaded: String },
    /// The named model takes another kind of input than the request carries.
    #[error("model {model:?} takes {expects:?} input, not {got:?}")]
    WrongInput {
        model: String,
        expects: InputKind,
        got: InputKind,
    },
    /// No loaded model takes this kind of input.
    #[error("no loaded model takes {kind:?} input; loaded: {loaded}")]
    NoModelFor { kind: InputKind, loaded: String },
    /// The inference queue is full: the caller should retry later.
    #[error("the inference queue is full ({capacity} jobs waiting)")]
    Overloaded { capacity: usize },
    /// The model returned an error.
    #[error("the model failed")]
    Model(#[from] ModelError),
    /// The model panicked on this batch; the compute thread survived.
    #[error("the model panicked: {0}")]
    Panicked(String),
    /// The deadline passed while the work was queued: it was dropped, never computed.
    #[error("the request's deadline passed before a compute thread was free")]
    DeadlineExceeded,
    /// The compute threads are gone (the process is shutting down).
    #[error("the compute threads have stopped")]
    Stopped,
    /// The compute threads could not be started.
    #[error("cannot start compute thread")]
    Spawn(#[source] std::io::Error),
}

/// The outputs of one job and where its time went.
#[derive(Debug)]
pub struct Forwarded {
    /// Outputs, one row per batch row.
    pub outputs: Outputs,
    /// Time spent waiting in the queue.
    pub queue_wait: Duration,
    /// Time the forward pass took.
    pub compute: Duration,
}

/// The loaded models and the compute pool that runs them. Shared by every I/O thread.
pub struct Infer {
    models: Vec<Arc<dyn Model>>,
    pool: ComputePool,
}

impl Infer {
    /// Starts the compute threads for these models. For each input kind, the first model
    /// of that kind is its default.
    pub fn start(models: Vec<Arc<dyn Model>>, cfg: &PoolConfig) -> Result<Self, InferError> {
        let pool = ComputePool::start(cfg).map_err(InferError::Spawn)?;
        Ok(Self { models, pool })
    }

    /// The model called `name` when it takes `kind` input; without a name, the default
    /// model for `kind` (the first loaded model of that kind).
    pub fn model_for(
        &self,
        name: Option<&str>,
        kind: InputKind,
    ) -> Result<&Arc<dyn Model>, InferError> {
        let Some(name) = name else {
            return self
                .models
                .iter()
                .find(|m| m.info().kind() == kind)
                .ok_or_else(|| InferError::NoModelFor {
                    kind,
                    loaded: self.model_names(),
                });
        };
        let model = self
            .models
            .iter()
            .find(|m| m.info().name == name)
            .ok_or_else(|| InferError::UnknownModel {
                name: name.to_owned(),
                loaded: self.model_names(),
            })?;
        let expects = model.info().kind();
        if expects != kind {
            return Err(InferError::WrongInput {
                model: name.to_owned(),
                expects,
                got: kind,
            });
        }
        Ok(model)
    }

    /// Every loaded model, default first.
    pub fn models(&self) -> &[Arc<dyn Model>] {
        &self.models
    }

    /// Jobs waiting for a compute thread now.
    pub fn queue_depth(&self) -> usize {
        self.pool.queue_depth()
    }

    /// Runs `batch` through `model` on a compute thread, unless `deadline` passes while it
    /// waits for one ([`InferError::DeadlineExceeded`]).
    ///
    /// Never waits for queue space: a full queue is [`InferError::Overloaded`] at once.
    /// Dropping the returned future withdraws the job if no thread has taken it yet.
    pub async fn forward(
        &self,
        model: &Arc<dyn Model>,
        batch: Batch,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Forwarded, InferError> {
        self.pool.submit(Arc::clone(model), batch, deadline).await
    }

    fn model_names(&self) -> String {
        self.models
            .iter()
            .map(|m| m.info().name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
