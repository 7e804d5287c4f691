//! Inference core: the model registry and the handle request code calls to run a model.
//!
//! Models run on dedicated compute threads ([`worker`]), fed by one bounded queue; an I/O
//! thread only enqueues a job and awaits its answer. This module knows nothing of HTTP.

pub mod cnn;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod delayed;
pub mod demo;
pub mod image;
pub mod manifest;
pub mod model;
pub mod onnx;
pub mod registry;
pub mod tabular;
pub mod train;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use crate::infer::manifest::InputKind;
use crate::infer::model::on_demand::{NotResident, Resident};
use crate::infer::model::{Batch, Model, ModelError, Outputs};
use crate::infer::registry::{Catalog, Chosen, Registry};
use crate::infer::worker::{ComputePool, PoolSettings};

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
    /// The model has no such version loaded.
    #[error("model {name:?} has no version {version:?}; loaded: {loaded}")]
    UnknownVersion {
        name: String,
        version: String,
        loaded: String,
    },
    /// The model (or the version asked for) is known but serves nothing: it failed to
    /// load, or was unloaded.
    #[error("model {name:?} is unavailable: {reason}")]
    Unavailable { name: String, reason: String },
    /// No loaded model takes this kind of input.
    #[error("no loaded model takes {kind:?} input; loaded: {loaded}")]
    NoModelFor { kind: InputKind, loaded: String },
    /// A version loaded on demand is not in memory and cannot be now.
    #[error(transparent)]
    NotResident(#[from] NotResident),
    /// The inference queue is full: the caller should retry later.
    #[error("the inference queue is full ({capacity} jobs waiting)")]
    Overloaded { capacity: usize },
    /// The model returned an error.
    #[error("the model failed: {0}")]
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

/// The served models and the compute pool that runs them. Shared by every I/O thread.
pub struct Infer {
    registry: Registry,
    pool: ComputePool,
}

impl Infer {
    /// Starts the compute threads to serve `catalog`.
    pub fn start(catalog: Catalog, cfg: &PoolSettings) -> Result<Self, InferError> {
        let pool = ComputePool::start(cfg).map_err(InferError::Spawn)?;
        Ok(Self {
            registry: Registry::new(catalog),
            pool,
        })
    }

    /// The model a `kind` request goes to: `name` (else the default for `kind`) at
    /// `version` (else as the model's split says, else its newest), and the shadow
    /// version it is mirrored to, if any (see [`Catalog::choose`]).
    pub fn choose(
        &self,
        name: Option<&str>,
        version: Option<&str>,
        kind: InputKind,
    ) -> Result<Chosen, InferError> {
        self.registry.snapshot().choose(name, version, kind)
    }

    /// The catalog in force now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.registry.snapshot()
    }

    /// Serves `catalog` from now on; work that already chose a model finishes on it.
    pub fn swap(&self, catalog: Catalog) {
        self.registry.swap(catalog);
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

    /// `model` in memory: itself, or for a version loaded on demand its loaded model,
    /// loaded first (within `until`) if need be.
    pub async fn resident(
        &self,
        model: &Arc<dyn Model>,
        until: tokio::time::Instant,
    ) -> Result<Resident, InferError> {
        match model.on_demand() {
            Some(handle) => Ok(handle.resident(until).await?),
            None => Ok(Resident {
                model: Arc::clone(model),
                load: None,
            }),
        }
    }

    /// Runs `model` once on its warm-up row ([`Batch::warm_up`]). A refusal of that row's
    /// input counts as warm: the model ran, and refused it as it would a client's.
    pub async fn warm_up(&self, model: &Arc<dyn Model>) -> Result<(), InferError> {
        match self
            .forward(model, Batch::warm_up(model.info()), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(InferError::Model(e)) if e.is_input_refusal() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
