//! `ai.onnx.ml` `TreeEnsembleClassifier` on our [`Forest`], as ONNX Runtime computes it:
//! per row the class scores (the trees' leaf weights summed, plus `base_values`), the label
//! of the highest (the first on a tie), and the scores after `post_transform` (`NONE`,
//! `SOFTMAX`, `LOGISTIC`, `SOFTMAX_ZERO`). The labels are integers: string labels have been
//! rewritten as their indices before (`rewrite.rs`).
//!
//! A binary classifier whose leaves weigh one class only (ONNX Runtime's "binary case",
//! which derives the other class's score) is left to tract's own operator.

use std::sync::OnceLock;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::super::graph::attribute;
use super::Builder;
use super::forest::{Aggregate, Forest, Shared, text};

/// tract's own parser, for the binary case; set by [`super::register`].
pub(super) static TRACTS: OnceLock<Builder> = OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
}

/// The operator: the forest, the class labels, the transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TreeEnsembleClassifier {
    forest: Shared,
    labels: Vec<i64>,
    post: PostTransform,
}

/// Parses a `TreeEnsembleClassifier` node (tract's `OpBuilder`).
pub(super) fn parse(
    ctx: &ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let labels: Vec<i64> = match attribute(node, "classlabels_int64s") {
        Some(a) if !a.ints.is_empty() => a.ints.clone(),
        _ => bail!("classlabels_int64s: no class labels"),
    };
    let class_ids = attribute(node, "class_ids").map_or(&[][..], |a| a.ints.as_slice());
    if labels.len() == 2 && class_ids.iter().all(|&c| c == 0) {
        let tracts = TRACTS
            .get()
            .ok_or_else(|| format_err!("tract's TreeEnsembleClassifier is not registered"))?;
        return tracts(ctx, node);
    }
    let post = match text(node, "post_transform", "NONE") {
        "NONE" => PostTransform::None,
        "SOFTMAX" => PostTransform::Softmax,
        "LOGISTIC" => PostTransform::Logistic,
        "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
        other => bail!("post_transform {other} is not served"),
    };
    let op = TreeEnsembleClassifier {
        forest: Forest::parse(node, "class", labels.len(), Aggregate::Sum)?,
        labels,
        post,
    };
    Ok((expand(op), vec![]))
}

impl TreeEnsembleClassifier {
    /// The label of each row's highest score, and the transformed scores.
    fn classify(&self, input: &Tensor) -> TractResult<(Tensor, Tensor)> {
        let (rows, mut values) = self.forest.scores(input)?;
        let classes = self.labels.len();
        let mut labels = Vec::with_capacity(rows);
        for row in values.chunks_exact_mut(classes.max(1)) {
            let best = (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best });
            labels.push(self.labels[best]);
            match self.post {
                PostTransform::None => {}
                PostTransform::Softmax => softmax(row, false),
                PostTransform::SoftmaxZero => softmax(row, true),
                PostTransform::Logistic => row.iter_mut().for_each(|v| *v = logistic(*v)),
            }
        }
        Ok((
            Tensor::from_shape(&[rows], &labels)?,
            Tensor::from_shape(&[rows, classes], &values)?,
        ))
    }
}

/// ONNX Runtime's softmax (`ml_common.h`): shifted by the row's maximum, `f32`; with
/// `zero`, a zero score stays zero and counts nothing.
fn softmax(row: &mut [f32], zero: bool) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        if !(zero && *v == 0.0) {
            *v = (*v - max).exp();
            sum += *v;
        }
    }
    for v in row.iter_mut() {
        if !(zero && *v == 0.0) {
            *v /= sum;
        }
    }
}

/// ONNX Runtime's logistic (`ml_common.h`), symmetric around 0.
fn logistic(v: f32) -> f32 {
    let p = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 { 1.0 - p } else { p }
}

impl Op for TreeEnsembleClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleClassifier {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (labels, scores) = self.classify(&input)?;
        Ok(tvec!(labels.into_tvalue(), scores.into_tvalue()))
    }
}

impl TypedOp for TreeEnsembleClassifier {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(
            i64::fact([n.clone()]),
            f32::fact([n, self.labels.len().to_dim()])
        ))
    }

    as_op!();
}

impl Expansion for TreeEnsembleClassifier {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 2)?;
        s.equals(&outputs[0].datum_type, DatumType::I64)?;
        s.equals(&outputs[1].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[1].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].shape[1], self.labels.len().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.clone(), inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transforms_are_onnx_runtimes() {
        let mut row = [1.0f32, 0.0, 3.0];
        softmax(&mut row, true);
        assert_eq!(row[1], 0.0, "a zero stays zero");
        assert!((row[0] + row[2] - 1.0).abs() < 1e-6);
        let mut row = [1.0f32, 0.0, 3.0];
        softmax(&mut row, false);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > 0.0);
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(2.0) + logistic(-2.0) - 1.0).abs() < 1e-7);
    }
}
