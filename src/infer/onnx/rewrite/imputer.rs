//! `Imputer` (scikit-learn's `SimpleImputer`) as `Where(missing, imputed, x)`, where
//! `missing` is `IsNaN(x)` when the replaced value is NaN (what skl2onnx writes for
//! `missing_values=np.nan`) and `Equal(x, replaced)` otherwise: the spec's replacement of
//! every `replaced` value by its column's imputed one (or the one imputed value for all).
//! Float inputs take the `_floats` attributes, integer ones the `_int64s`, as ONNX
//! Runtime's kernel does.

use tract_onnx::pb::NodeProto;

use super::super::OnnxError;
use super::super::graph::attribute;
use super::{Expansion, Names, bad, floats, int64s, one_in_one_out};

/// `Where` and its mask, and the two constants.
pub(super) fn expand(node: &NodeProto, names: &Names) -> Result<Expansion, OnnxError> {
    let (x, y) = one_in_one_out(node)?;
    let imputed_floats = attribute(node, "imputed_value_floats").map(|a| a.floats.clone());
    let imputed_ints = attribute(node, "imputed_value_int64s").map(|a| a.ints.clone());
    let (imputed_name, missing) = (names.of("imputed"), names.of("missing"));
    let (imputed, mask, replaced) = match (imputed_floats, imputed_ints) {
        (Some(values), None) if !values.is_empty() => {
            let replaced = attribute(node, "replaced_value_float").map_or(0.0, |a| a.f);
            let imputed = floats(imputed_name.clone(), values);
            if replaced.is_nan() {
                (imputed, names.node("IsNaN", &[x], &missing), None)
            } else {
                let replaced_name = names.of("replaced");
                let mask = names.node("Equal", &[x, &replaced_name], &missing);
                (imputed, mask, Some(floats(replaced_name, vec![replaced])))
            }
        }
        (None, Some(values)) if !values.is_empty() => {
            let replaced = attribute(node, "replaced_value_int64").map_or(0, |a| a.i);
            let replaced_name = names.of("replaced");
            let mask = names.node("Equal", &[x, &replaced_name], &missing);
            let imputed = int64s(imputed_name.clone(), values);
            (imputed, mask, Some(int64s(replaced_name, vec![replaced])))
        }
        _ => {
            return Err(bad(
                node,
                "needs one of imputed_value_floats and imputed_value_int64s, not empty",
            ));
        }
    };
    Ok(Expansion {
        nodes: vec![mask, names.node("Where", &[&missing, &imputed_name, x], y)],
        constants: [Some(imputed), replaced].into_iter().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::{AttributeProto, GraphProto};

    use super::super::apply;
    use super::super::tests::node;
    use crate::infer::onnx::graph::ML_DOMAIN;

    fn imputer(attributes: Vec<AttributeProto>) -> GraphProto {
        let mut imputer = node("Imputer", ML_DOMAIN, "x", "y");
        imputer.attribute = attributes;
        GraphProto {
            node: vec![imputer],
            ..GraphProto::default()
        }
    }

    #[test]
    fn a_nan_imputer_becomes_where_isnan() {
        let mut graph = imputer(vec![
            AttributeProto {
                name: "imputed_value_floats".into(),
                floats: vec![1.5, 2.5],
                ..AttributeProto::default()
            },
            AttributeProto {
                name: "replaced_value_float".into(),
                f: f32::NAN,
                ..AttributeProto::default()
            },
        ]);
        apply(&mut graph).unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["IsNaN", "Where"]);
        assert_eq!(graph.node[0].input, ["x"]);
        assert_eq!(graph.node[1].input[2], "x");
        assert_eq!(graph.node[1].output, ["y"]);
        assert_eq!(graph.initializer.len(), 1);
        assert_eq!(graph.initializer[0].float_data, [1.5, 2.5]);
    }

    #[test]
    fn an_integer_imputer_compares_with_its_replaced_value() {
        let mut graph = imputer(vec![
            AttributeProto {
                name: "imputed_value_int64s".into(),
                ints: vec![7],
                ..AttributeProto::default()
            },
            AttributeProto {
                name: "replaced_value_int64".into(),
                i: -1,
                ..AttributeProto::default()
            },
        ]);
        apply(&mut graph).unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Equal", "Where"]);
        let ints: Vec<&[i64]> = graph
            .initializer
            .iter()
            .map(|t| t.int64_data.as_slice())
            .collect();
        assert_eq!(ints, [&[7][..], &[-1][..]]);
    }

    #[test]
    fn an_imputer_without_values_is_refused() {
        let err = apply(&mut imputer(Vec::new())).unwrap_err().to_string();
        assert!(err.contains("Imputer"), "{err}");
    }
}
