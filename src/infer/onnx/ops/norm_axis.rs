//! tract's normalisation operators that take an `axis` (`LayerNormalization`,
//! `RMSNormalization`, `SimplifiedLayerNormalization`), with the axis checked against the
//! input's rank before tract uses it. tract-onnx 0.23.9 computes `(axis + rank) as usize`
//! there, and then loops up to that: an axis outside `[-rank, rank)` wraps to a number
//! near `usize::MAX`, and the load never ends (the fuzzer's
//! `corpus/onnx_model/regress-layernorm-axis-below-rank`). ONNX allows only that range.

use std::collections::HashMap;
use std::sync::OnceLock;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::super::graph::attribute;
use super::Builder;

/// The operators wrapped, by the names tract registers them under.
pub(super) const OPERATORS: [&str; 3] = [
    "LayerNormalization",
    "RMSNormalization",
    "SimplifiedLayerNormalization",
];

/// tract's own parsers for [`OPERATORS`]; set by [`super::register`].
pub(super) static TRACTS: OnceLock<HashMap<&'static str, Builder>> = OnceLock::new();

/// tract's operator, and the axis its node names.
#[derive(Debug, Clone)]
struct AxisChecked {
    axis: i64,
    tracts: Box<dyn Expansion>,
}

/// Parses one of [`OPERATORS`] with tract's parser, and wraps what it makes.
pub(super) fn parse(
    ctx: &ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tracts = TRACTS
        .get()
        .and_then(|parsers| parsers.get(node.op_type.as_str()))
        .ok_or_else(|| format_err!("tract's {} is not registered", node.op_type))?;
    let (op, extra) = tracts(ctx, node)?;
    let op: &dyn Op = op.as_ref();
    let Some(expansion) = op.downcast_ref::<Box<dyn Expansion>>() else {
        bail!("tract's {} is not an expansion", node.op_type);
    };
    let axis = attribute(node, "axis").map_or(-1, |a| a.i);
    Ok((
        expand(AxisChecked {
            axis,
            tracts: expansion.clone(),
        }),
        extra,
    ))
}

impl AxisChecked {
    /// tract's operator, as the expansion it is (its box implements tract's other operator
    /// traits too, whose methods share these names).
    fn tracts(&self) -> &dyn Expansion {
        &*self.tracts
    }

    /// The same check at wiring, where tract computes the axis again (from the typed
    /// input's rank).
    fn check_wired(&self, model: &TypedModel, inputs: &[OutletId]) -> TractResult<()> {
        let input = inputs
            .first()
            .ok_or_else(|| format_err!("{} needs an input", self.name()))?;
        axis_index(self.axis, model.outlet_fact(*input)?.rank())?;
        Ok(())
    }
}

/// `axis` as an index into a tensor of rank `rank`, if ONNX allows it there (`[-rank,
/// rank)`, negative counting from the end).
fn axis_index(axis: i64, rank: usize) -> TractResult<usize> {
    let rank = i64::try_from(rank)?;
    let index = if axis < 0 {
        axis.checked_add(rank)
    } else {
        Some(axis)
    };
    match index {
        Some(index) if (0..rank).contains(&index) => Ok(usize::try_from(index)?),
        _ => bail!("axis {axis} is outside [-{rank}, {rank}) for an input of rank {rank}"),
    }
}

impl Expansion for AxisChecked {
    fn name(&self) -> StaticName {
        self.tracts().name()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        self.tracts().info()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        self.tracts().nboutputs()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.is_empty() || outputs.is_empty() {
            bail!("{} needs an input and an output", self.name());
        }
        // The output has the input's shape, so its rank, when the graph gives it, decides
        // the input's here; tract's rules (which use the rank unchecked) are only added
        // once the rank is known and the axis found valid for it. Added beside ours, they
        // could see the rank first: the solver applies every rule that can apply, in order,
        // within one pass.
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        s.given(&inputs[0].rank, move |s, rank| {
            axis_index(self.axis, usize::try_from(rank)?)?;
            self.tracts().rules(s, inputs, outputs)
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        self.check_wired(model, inputs)?;
        self.tracts().wire(prefix, model, inputs)
    }

    fn wire_with_inference_model_and_node(
        &self,
        prefix: &str,
        model: &InferenceModel,
        node: &InferenceNode,
        typed_model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        self.check_wired(typed_model, inputs)?;
        self.tracts()
            .wire_with_inference_model_and_node(prefix, model, node, typed_model, inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::axis_index;

    #[test]
    fn an_axis_counts_from_either_end_within_the_rank_and_nowhere_else() {
        assert_eq!(axis_index(-1, 2).unwrap(), 1);
        assert_eq!(axis_index(-2, 2).unwrap(), 0);
        assert_eq!(axis_index(0, 2).unwrap(), 0);
        assert_eq!(axis_index(1, 2).unwrap(), 1);
        for (axis, rank) in [
            (-3, 2),
            (-5, 2),
            (2, 2),
            (-1, 0),
            (0, 0),
            (i64::MIN, 4),
            (i64::MAX, 4),
        ] {
            let error = axis_index(axis, rank).unwrap_err().to_string();
            assert!(
                error.contains(&format!("axis {axis} is outside")),
                "{error}"
            );
        }
    }
}
