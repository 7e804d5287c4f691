//! `ai.onnx.ml` `OneHotEncoder` with integer categories (scikit-learn's, on numeric-coded
//! columns): each input value, as an integer (truncated, as ONNX Runtime's
//! `static_cast<int64_t>`), becomes one float per category, 1 where it is that category.
//! The output has the input's shape and one more axis, the categories. A value that is no
//! category (NaN included) gives all zeros where `zeros` is 1 (`handle_unknown="ignore"`);
//! where it is 0 (scikit-learn's default, `handle_unknown="error"`) the run fails with
//! [`UnseenCategory`], as ONNX Runtime's does, and the request is answered 422.

use std::collections::BTreeMap;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// A value no category of the encoder matches, where the model refuses those.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the value {value} is not one of the categories the model was fitted on ({node:?})")]
pub struct UnseenCategory {
    /// The value, as sent.
    pub value: f64,
    /// The encoder node's name.
    pub node: String,
}

/// The operator: each category's position in the output, how many the output holds, and
/// whether an unseen value is zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneHotEncoder {
    node: String,
    index: BTreeMap<i64, usize>,
    width: usize,
    zeros: bool,
}

impl OneHotEncoder {
    /// The encoder of `categories`, in output order (a repeated one takes its last place,
    /// as ONNX Runtime's map does), called `node`.
    fn new(node: String, categories: &[i64], zeros: bool) -> Self {
        Self {
            node,
            index: categories
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, i))
                .collect(),
            width: categories.len(),
            zeros,
        }
    }
}

/// Parses a `OneHotEncoder` node (tract's `OpBuilder`).
pub fn parse(
    _ctx: &ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if node.attribute.iter().any(|a| a.name == "cats_strings") {
        bail!("cats_strings is not served: tabular inputs are numbers (cats_int64s are)");
    }
    let categories: Vec<i64> = node.get_attr_vec("cats_int64s")?;
    node.expect_attr(
        "cats_int64s",
        !categories.is_empty(),
        "at least one category",
    )?;
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((
        expand(OneHotEncoder::new(node.name.clone(), &categories, zeros)),
        vec![],
    ))
}

/// An input element type: its value as a category, and as shown in an error.
trait Category: Datum + Copy {
    fn category(self) -> Option<i64>;
    fn shown(self) -> f64;
}

impl Category for i64 {
    fn category(self) -> Option<i64> {
        Some(self)
    }
    fn shown(self) -> f64 {
        self as f64
    }
}

impl Category for f64 {
    fn category(self) -> Option<i64> {
        // NaN and values past i64 are no category (ONNX Runtime's cast of them gives
        // i64::MIN, which none is in practice).
        (self.is_finite() && self.abs() < 9.2e18).then(|| self.trunc() as i64)
    }
    fn shown(self) -> f64 {
        self
    }
}

impl Category for f32 {
    fn category(self) -> Option<i64> {
        f64::from(self).category()
    }
    fn shown(self) -> f64 {
        f64::from(self)
    }
}

impl OneHotEncoder {
    fn encode<T: Category>(&self, input: &Tensor) -> TractResult<Tensor> {
        let c = self.width;
        let values = input.to_plain_array_view::<T>()?;
        let mut shape: TVec<usize> = input.shape().into();
        shape.push(c);
        let mut out = vec![0f32; values.len() * c];
        for (i, &v) in values.iter().enumerate() {
            match v.category().and_then(|k| self.index.get(&k)) {
                Some(&k) => out[i * c + k] = 1.0,
                None if self.zeros => {}
                None => {
                    return Err(UnseenCategory {
                        value: v.shown(),
                        node: self.node.clone(),
                    }
                    .into());
                }
            }
        }
        Tensor::from_shape(&shape, &out)
    }
}

impl Op for OneHotEncoder {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
    }

    op_as_typed_op!();
}

impl EvalOp for OneHotEncoder {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext<'_>, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let out = match input.datum_type() {
            DatumType::F32 => self.encode::<f32>(&input)?,
            DatumType::F64 => self.encode::<f64>(&input)?,
            // Integers of every width, and tract's symbolic dimensions (what it makes of an
            // int64 tensor it can reason about, as a `Cast` to int64's output).
            _ => self.encode::<i64>(&*input.cast_to::<i64>()?)?,
        };
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for OneHotEncoder {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.push(self.width.to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

impl Expansion for OneHotEncoder {
    fn name(&self) -> StaticName {
        "OneHotEncoder".into()
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
        s.equals(inputs[0].rank.bex() + 1, outputs[0].rank.bex())?;
        let categories = self.width;
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            for axis in 0..rank {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            s.equals(&outputs[0].shape[rank], categories.to_dim())
        })?;
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

    fn encoder(zeros: bool) -> OneHotEncoder {
        OneHotEncoder::new("onehot".into(), &[1, 2, 7], zeros)
    }

    #[test]
    fn values_become_one_float_per_category() {
        let input = Tensor::from_shape(&[2, 2], &[1.0f32, 7.9, 2.0, 5.0]).unwrap();
        let out = encoder(true).encode::<f32>(&input).unwrap();
        assert_eq!(out.shape(), [2, 2, 3]);
        let values = out.to_plain_array_view::<f32>().unwrap();
        let values: Vec<f32> = values.iter().copied().collect();
        // 1 -> first; 7.9 truncates to 7 -> third; 2 -> second; 5 -> none.
        assert_eq!(values, [1., 0., 0., 0., 0., 1., 0., 1., 0., 0., 0., 0.]);
    }

    #[test]
    fn an_unseen_value_is_zeros_or_the_typed_error() {
        let input = Tensor::from_shape(&[1, 1], &[f32::NAN]).unwrap();
        let out = encoder(true).encode::<f32>(&input).unwrap();
        assert!(
            out.to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .all(|&v| v == 0.0)
        );
        let input = Tensor::from_shape(&[1, 1], &[5i64]).unwrap();
        let err = encoder(false).encode::<i64>(&input).unwrap_err();
        let unseen = err.downcast_ref::<UnseenCategory>().unwrap();
        assert_eq!(unseen.value, 5.0);
    }
}
