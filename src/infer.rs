//! Inference core: the `Model` seam and the models behind it.

pub mod manifest;
pub mod model;
