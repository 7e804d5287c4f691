//! `ai.onnx.ml` `TreeEnsembleRegressor`: each row's `n_targets` values are the sum (or the
//! average) of the leaf weights its trees reach, plus `base_values`, as ONNX Runtime
//! computes them ([`Forest`]). tract has no such operator.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::forest::{Aggregate, Forest, Shared, text};

/// The operator: the forest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TreeEnsembleRegressor {
    forest: Shared,
}

/// Parses a `TreeEnsembleRegressor` node (tract's `OpBuilder`).
pub(super) fn parse(
    _ctx: &ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let n_targets = super::super::graph::attribute(node, "n_targets").map_or(0, |a| a.i);
    let targets = usize::try_from(n_targets)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| format_err!("n_targets is {n_targets}"))?;
    let aggregate = match text(node, "aggregate_function", "SUM") {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        other => bail!("aggregate_function {other} is not served (SUM and AVERAGE are)"),
    };
    match text(node, "post_transform", "NONE") {
        "NONE" => {}
        other => bail!("post_transform {other} is not served on a regressor (NONE is)"),
    }
    let op = TreeEnsembleRegressor {
        forest: Forest::parse(node, "target", targets, aggregate)?,
    };
    Ok((expand(op), vec![]))
}

impl Op for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleRegressor {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (rows, values) = self.forest.scores(&input)?;
        let scores = Tensor::from_shape(&[rows, self.forest.outputs()], &values)?;
        Ok(tvec!(scores.into_tvalue()))
    }
}

impl TypedOp for TreeEnsembleRegressor {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[0].shape[0].clone();
        Ok(tvec!(f32::fact([n, self.forest.outputs().to_dim()])))
    }

    as_op!();
}

impl Expansion for TreeEnsembleRegressor {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.forest.outputs().to_dim())?;
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
