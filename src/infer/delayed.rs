//! A test aid: a model made deliberately slow (`model.forward_delay_ms`), so that deadline,
//! cancellation and overload behaviour can be shown on a model of known speed.

use std::time::Duration;

use crate::infer::manifest::ModelInfo;
use crate::infer::model::{Batch, Model, ModelError, Outputs};

/// `inner`, with every forward pass sleeping `delay` first (on its compute thread).
pub struct Delayed<M> {
    inner: M,
    delay: Duration,
}

impl<M: Model> Delayed<M> {
    /// Wraps `inner`.
    pub fn new(inner: M, delay: Duration) -> Self {
        Self { inner, delay }
    }
}

impl<M: Model> Model for Delayed<M> {
    fn info(&self) -> &ModelInfo {
        self.inner.info()
    }

    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        std::thread::sleep(self.delay);
        self.inner.forward(batch)
    }
}
