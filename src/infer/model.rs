//! The seam every model backend implements: a synchronous forward pass on a batch.
//!
//! Nothing here knows about HTTP, caches or threads; callers run `forward` on compute
//! threads only, never on I/O threads.

use crate::infer::manifest::ModelInfo;

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

/// Class probabilities for each row of a batch, row-major; each row sums to 1.
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
}

/// A loaded model. `forward` is called from compute threads, possibly several at once.
pub trait Model: Send + Sync {
    /// What the model is: name, version, labels, the input it takes.
    fn info(&self) -> &ModelInfo;
    /// Runs one batch. Never panics on a well-shaped batch.
    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError>;
}

impl<M: Model + ?Sized> Model for Box<M> {
    fn info(&self) -> &ModelInfo {
        (**self).info()
    }

    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        (**self).forward(batch)
    }
}

/// Test models that are chosen, loaded and listed, never run.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use super::{Batch, Model, ModelError, Outputs};
    use crate::infer::manifest::{InputSpec, ModelInfo};

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
            input: InputSpec::Features {
                names: vec!["x".into()],
            },
            max_batch: 8,
            revision: 1,
        }))
    }
}
