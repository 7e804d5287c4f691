//! The seam every model backend implements: a synchronous forward pass on a batch.
//!
//! Nothing here knows about HTTP, caches or threads; callers run `forward` on compute
//! threads only, never on I/O threads.

pub mod on_demand;

use crate::infer::manifest::ModelInfo;
use crate::infer::model::on_demand::OnDemand;

/// A row-major batch of inputs: raw feature vectors, or prepared image tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Number of rows (requests) in the batch.
    pub rows: usize,
    /// Values per row; equals the model's [`ModelInfo::row_len`].
    pub features: usize,
    /// `rows * features` values, row after row.
    pub data: Vec<f32>,
}

impl Batch {
    /// The one row a model is warmed up with: zeros, or every value missing (NaN) for a
    /// model that takes missing values (its imputers fill them in).
    pub fn warm_up(info: &ModelInfo) -> Self {
        let features = info.row_len();
        let value = if info.takes_missing { f32::NAN } else { 0.0 };
        Self {
            rows: 1,
            features,
            data: vec![value; features],
        }
    }
}

/// Class probabilities for each row of a batch, row-major; each row sums to 1 (a
/// regressor's: its one value per row).
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// Number of rows, equal to the batch's.
    pub rows: usize,
    /// Classes per row; equals the model's label count.
    pub classes: usize,
    /// `rows * classes` probabilities.
    pub probs: Vec<f32>,
}

impl Outputs {
    /// The probabilities of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.probs[i * self.classes..(i + 1) * self.classes]
    }
}

/// Why a forward pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The batch does not have the shape the model expects.
    #[error("batch has {got} values per row, the model takes {expected}")]
    Shape { expected: usize, got: usize },
    /// The weights or the manifest could not be loaded or do not fit each other.
    #[error("cannot load model: {0}")]
    Load(String),
    /// The tensor library failed.
    #[error("tensor operation failed")]
    Tensor(#[from] candle_core::Error),
    /// The inference engine of a user's model (tract, for ONNX) failed, or gave what the
    /// model's signature does not allow (a wrong shape).
    #[error("inference engine: {0}")]
    Engine(String),
    /// A row holds a value the model's category encoder was not fitted on, where the
    /// model refuses those (as its ONNX Runtime run would): the client's input, not a
    /// failure of the model.
    #[error("{0}")]
    UnseenCategory(String),
}

impl ModelError {
    /// Whether the model refused the input, as it would refuse a client's (the model
    /// itself ran): a warm-up that meets this has shown the model works.
    pub fn is_input_refusal(&self) -> bool {
        matches!(self, Self::UnseenCategory(_))
    }
}

/// A loaded model. `forward` is called from compute threads, possibly several at once.
pub trait Model: Send + Sync {
    /// What the model is: name, version, labels, the input it takes.
    fn info(&self) -> &ModelInfo;
    /// Runs one batch. Never panics on a well-shaped batch.
    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError>;
    /// The handle of a version loaded on demand, which requests make resident before they
    /// run it; `None` for a model in memory for good.
    fn on_demand(&self) -> Option<&OnDemand> {
        None
    }
}

impl<M: Model + ?Sized> Model for Box<M> {
    fn info(&self) -> &ModelInfo {
        (**self).info()
    }

    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        (**self).forward(batch)
    }

    fn on_demand(&self) -> Option<&OnDemand> {
        (**self).on_demand()
    }
}

/// Test models: ones that are chosen, loaded and listed, never run ([`unrun`]), and one
/// that runs, answers fixed probabilities and counts its work ([`fixed`]).
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Batch, Model, ModelError, Outputs};
    use crate::infer::manifest::{Compute, InputSpec, ModelInfo, Task};

    struct Unrun(ModelInfo);

    impl Model for Unrun {
        fn info(&self) -> &ModelInfo {
            &self.0
        }
        fn forward(&self, _: &Batch) -> Result<Outputs, ModelError> {
            Err(ModelError::Load("a test model is never run".into()))
        }
    }

    /// A one-feature, two-class model called `name` at `version`.
    pub(crate) fn unrun(name: &str, version: &str) -> Arc<dyn Model> {
        Arc::new(Unrun(ModelInfo {
            name: name.into(),
            version: version.into(),
            labels: vec!["a".into(), "b".into()],
            task: Task::Classification,
            input: InputSpec::Features {
                names: vec!["x".into()],
            },
            takes_missing: false,
            own_names: None,
            max_batch: 8,
            revision: 1,
            compute: Compute::CPU,
        }))
    }

    /// The work a [`Fixed`] model has done.
    #[derive(Debug, Default)]
    pub(crate) struct Calls {
        passes: AtomicUsize,
        rows: AtomicUsize,
    }

    impl Calls {
        /// Forward passes run.
        pub(crate) fn passes(&self) -> usize {
            self.passes.load(Ordering::SeqCst)
        }

        /// Rows those passes carried.
        pub(crate) fn rows(&self) -> usize {
            self.rows.load(Ordering::SeqCst)
        }
    }

    /// A model that answers the same probabilities for every row, whatever its input.
    pub(crate) struct Fixed {
        info: ModelInfo,
        probs: Vec<f32>,
        calls: Arc<Calls>,
    }

    impl Model for Fixed {
        fn info(&self) -> &ModelInfo {
            &self.info
        }

        fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
            // As a real model: a batch of the wrong width is refused, not answered.
            let expected = self.info.row_len();
            if batch.features != expected {
                return Err(ModelError::Shape {
                    expected,
                    got: batch.features,
                });
            }
            self.calls.passes.fetch_add(1, Ordering::SeqCst);
            self.calls.rows.fetch_add(batch.rows, Ordering::SeqCst);
            Ok(Outputs {
                rows: batch.rows,
                classes: self.probs.len(),
                probs: self.probs.repeat(batch.rows),
            })
        }
    }

    /// A `features`-feature model called `name` at version `1`, answering `probs` (one
    /// class each), and the count of its work.
    pub(crate) fn fixed(name: &str, features: usize, probs: &[f32]) -> (Fixed, Arc<Calls>) {
        let calls = Arc::new(Calls::default());
        let model = Fixed {
            info: ModelInfo {
                name: name.into(),
                version: "1".into(),
                labels: (0..probs.len()).map(|i| format!("class{i}")).collect(),
                task: Task::Classification,
                input: InputSpec::Features {
                    names: (0..features).map(|i| format!("x{i}")).collect(),
                },
                takes_missing: false,
                own_names: None,
                max_batch: 8,
                revision: 0,
                compute: Compute::CPU,
            },
            probs: probs.to_vec(),
            calls: Arc::clone(&calls),
        };
        (model, calls)
    }
}
