//! The `ai.onnx.ml` operators tract does not parse, as tract operators of ours, added to
//! its operator register before a file is read. Each computes what ONNX Runtime does
//! (the exports' tests compare every answer with it).

pub mod one_hot_encoder;
mod tree_regressor;

use tract_onnx::model::OnnxOpRegister;

/// Adds our operators to `register`.
pub fn register(register: &mut OnnxOpRegister) {
    register.insert("TreeEnsembleRegressor", tree_regressor::parse);
    register.insert("OneHotEncoder", one_hot_encoder::parse);
}
