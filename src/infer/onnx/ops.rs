//! The `ai.onnx.ml` operators tract does not parse, or runs slowly, as tract operators of
//! ours, put in its operator register before a file is read. Each computes what ONNX
//! Runtime does (the exports' tests compare every answer with it). Also tract's
//! normalisations by axis, wrapped so that an axis out of range is refused rather than
//! hanging the load (`norm_axis`).

mod forest;
mod norm_axis;
pub mod one_hot_encoder;
mod tree_classifier;
mod tree_regressor;

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::{InferenceOp, TractResult};

/// An operator parser, as tract's register holds them (tract's own name for the type is
/// private).
type Builder =
    fn(&ParsingContext<'_>, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// Adds our operators to `register` (replacing tract's `TreeEnsembleClassifier`, which it
/// keeps for the binary case, and wrapping its normalisations by axis).
pub fn register(register: &mut OnnxOpRegister) {
    if let Some(&tracts) = register.0.get("TreeEnsembleClassifier") {
        // The same function every time: a second registration changes nothing.
        let _ = tree_classifier::TRACTS.set(tracts);
    }
    register.insert("TreeEnsembleClassifier", tree_classifier::parse);
    register.insert("TreeEnsembleRegressor", tree_regressor::parse);
    register.insert("OneHotEncoder", one_hot_encoder::parse);
    // tract's parsers, as the first registration found them (the same functions every
    // time); only the operators tract has are wrapped.
    let tracts = norm_axis::TRACTS.get_or_init(|| {
        norm_axis::OPERATORS
            .iter()
            .filter_map(|&op| Some((op, *register.0.get(op)?)))
            .collect()
    });
    for &op in tracts.keys() {
        register.insert(op, norm_axis::parse);
    }
}
