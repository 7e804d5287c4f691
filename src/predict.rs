//! The read-through from a decoded request to an answer: pick the model, check the input
//! against it, run it on the compute threads within the request deadline, record the
//! prediction. Cache lookups, coalescing, batching and the prediction log plug in here.
//!
//! Knows nothing of HTTP: handlers call it after decoding and encode what it returns.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::infer::model::{Batch, Model};
use crate::infer::{Infer, InferError};
use crate::stats::Stats;

/// A decoded, type-checked tabular request (finite numbers, at least one).
#[derive(Debug, Clone, PartialEq)]
pub struct TabularInput {
    /// Model picked by name; `None` is the default model.
    pub model: Option<String>,
    /// The feature values.
    pub features: Vec<f32>,
    /// Length of the array the client sent (may exceed `features.len()` for huge arrays).
    pub len: usize,
}

/// Where an answer came from. Without a cache every answer is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Computed by the model for this request.
    Miss,
}

impl CacheStatus {
    /// The `X-Cache` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Miss => "miss",
        }
    }

    /// Whether the answer was served from a cache.
    pub fn is_cached(self) -> bool {
        false
    }
}

/// One answered prediction.
pub struct Prediction {
    /// UUIDv7 made here, returned to the client and written to the log.
    pub prediction_id: Uuid,
    /// The model that answered.
    pub model: Arc<dyn Model>,
    /// Class probabilities, indexed by class id.
    pub probs: Vec<f32>,
    /// Where the answer came from.
    pub cache: CacheStatus,
    /// Time waiting for a compute thread.
    pub queue_wait: Duration,
    /// Time of the forward pass.
    pub compute: Duration,
}

impl Prediction {
    /// Class ids sorted by probability, best first (ties keep the lower id first).
    pub fn ranked(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.probs.len()).collect();
        ids.sort_by(|&a, &b| self.probs[b].total_cmp(&self.probs[a]).then(a.cmp(&b)));
        ids
    }
}

/// Why a prediction was not made.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The input does not have the model's feature count.
    #[error("expected {expected} features, got {got}")]
    FeatureCount {
        expected: usize,
        got: usize,
        names: Vec<String>,
    },
    /// The request deadline passed before the model answered.
    #[error("no answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// The inference core refused or failed.
    #[error(transparent)]
    Infer(#[from] InferError),
}

/// Runs predictions; one per process, shared by every I/O thread.
pub struct Predictor {
    infer: Arc<Infer>,
    stats: Arc<Stats>,
    deadline: Duration,
}

impl Predictor {
    /// A predictor answering within `deadline` per request.
    pub fn new(infer: Arc<Infer>, stats: Arc<Stats>, deadline: Duration) -> Self {
        Self {
            infer,
            stats,
            deadline,
        }
    }

    /// Predicts a tabular input.
    pub async fn tabular(&self, input: TabularInput) -> Result<Prediction, PredictError> {
        let model = Arc::clone(self.infer.model(input.model.as_deref())?);
        let manifest = model.manifest();
        let expected = manifest.n_features();
        if input.len != expected {
            return Err(PredictError::FeatureCount {
                expected,
                got: input.len,
                names: manifest.feature_names.clone(),
            });
        }
        let batch = Batch {
            rows: 1,
            features: expected,
            data: input.features,
        };
        let forwarded = tokio::time::timeout(self.deadline, self.infer.forward(&model, batch))
            .await
            .map_err(|_| PredictError::Timeout {
                timeout_ms: self.deadline.as_millis() as u64,
            })??;
        let probs = forwarded.outputs.row(0).to_vec();
        let prediction = Prediction {
            prediction_id: Uuid::now_v7(),
            model,
            probs,
            cache: CacheStatus::Miss,
            queue_wait: forwarded.queue_wait,
            compute: forwarded.compute,
        };
        let confidence = prediction
            .ranked()
            .first()
            .map_or(0.0, |&id| prediction.probs[id]);
        self.stats.record_prediction(confidence);
        Ok(prediction)
    }
}
