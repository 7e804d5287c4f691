//! Plans for concrete batch sizes. tract optimises a graph whose batch dimension is a symbol
//! into slower kernels than one whose every dimension is known: a depthwise convolution
//! runs 3 to 6 times slower (EfficientNet-Lite0, MobileNetV3; BENCHMARKS.md). An image
//! network therefore runs a batch on the plan of the next power of two (the rows padded with
//! zeros), made from the decluttered graph on first use; a batch larger than the largest
//! such plan runs on the symbolic one. Each plan packs its own copy of the weights: the
//! sizes are few.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tract_onnx::prelude::{
    IntoRunnable as _, Symbol, TDim, TractResult, TypedModel, TypedRunnableModel,
};

/// The concrete plans of one graph, made on first use.
pub struct SizedPlans {
    /// The graph, decluttered, with its batch dimension the symbol `batch`.
    typed: TypedModel,
    batch: Symbol,
    /// By batch size.
    plans: Mutex<HashMap<usize, Arc<TypedRunnableModel>>>,
}

impl std::fmt::Debug for SizedPlans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: Vec<usize> = self.lock().keys().copied().collect();
        f.debug_struct("SizedPlans").field("sizes", &sizes).finish()
    }
}

impl SizedPlans {
    /// The largest batch with a plan of its own.
    pub const LARGEST: usize = 8;

    /// Plans for `typed`, whose batch dimension is `batch`; none is made yet.
    pub fn new(typed: TypedModel, batch: Symbol) -> Self {
        Self {
            typed,
            batch,
            plans: Mutex::new(HashMap::new()),
        }
    }

    /// The plan for a batch of `rows` and the rows it takes (the next power of two, the
    /// rest to pad), made now if it is the first of its size; `None` past [`Self::LARGEST`].
    pub fn for_rows(&self, rows: usize) -> TractResult<Option<(usize, Arc<TypedRunnableModel>)>> {
        let size = rows.max(1).next_power_of_two();
        if size > Self::LARGEST {
            return Ok(None);
        }
        // Held while a plan is made: compute threads asking for the same size wait for it
        // rather than each making one.
        let mut plans = self.lock();
        if let Some(plan) = plans.get(&size) {
            return Ok(Some((size, plan.clone())));
        }
        let value = i64::try_from(size).unwrap_or(i64::MAX);
        let subs = HashMap::from([(self.batch.clone(), TDim::Val(value))]);
        let plan = self
            .typed
            .set_symbols(&subs)?
            .into_optimized()?
            .into_runnable()?;
        plans.insert(size, plan.clone());
        Ok(Some((size, plan)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Arc<TypedRunnableModel>>> {
        // A panic while a plan was made (caught by the compute thread) left no plan in.
        self.plans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
