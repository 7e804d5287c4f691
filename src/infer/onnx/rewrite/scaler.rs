//! `Scaler` as `Cast(float)`, `Sub(offset)`, `Mul(scale)`: the spec's
//! `(X - offset) * scale` in float, in that order.

use tract_onnx::pb::NodeProto;

use super::super::OnnxError;
use super::super::graph::attribute;
use super::{Expansion, FLOAT, Names, bad, floats, one_in_one_out};

/// The three standard nodes and the two constants.
pub(super) fn expand(node: &NodeProto, names: &Names) -> Result<Expansion, OnnxError> {
    let (x, y) = one_in_one_out(node)?;
    let values = |name: &str| attribute(node, name).map(|a| a.floats.clone());
    let offset = values("offset").unwrap_or_else(|| vec![0.0]);
    let scale = values("scale").unwrap_or_else(|| vec![1.0]);
    if offset.is_empty() || scale.is_empty() {
        return Err(bad(node, "offset and scale must not be empty"));
    }
    let (cast, shifted) = (names.of("cast"), names.of("shifted"));
    let (offset_name, scale_name) = (names.of("offset"), names.of("scale"));
    Ok(Expansion {
        nodes: vec![
            names.cast(FLOAT, x, &cast),
            names.node("Sub", &[&cast, &offset_name], &shifted),
            names.node("Mul", &[&shifted, &scale_name], y),
        ],
        constants: vec![floats(offset_name, offset), floats(scale_name, scale)],
    })
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::{AttributeProto, GraphProto};

    use super::super::apply;
    use super::super::tests::node;
    use crate::infer::onnx::graph::ML_DOMAIN;

    #[test]
    fn a_scaler_becomes_cast_sub_mul_with_its_constants() {
        let mut scaler = node("Scaler", ML_DOMAIN, "x", "y");
        scaler.attribute = vec![
            AttributeProto {
                name: "offset".into(),
                floats: vec![1.0, 2.0],
                ..AttributeProto::default()
            },
            AttributeProto {
                name: "scale".into(),
                floats: vec![0.5, 0.25],
                ..AttributeProto::default()
            },
        ];
        let mut graph = GraphProto {
            node: vec![scaler],
            ..GraphProto::default()
        };
        apply(&mut graph).unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Cast", "Sub", "Mul"]);
        assert_eq!(graph.node[0].input, ["x"]);
        assert_eq!(graph.node[2].output, ["y"]);
        let offsets: Vec<&[f32]> = graph
            .initializer
            .iter()
            .map(|t| t.float_data.as_slice())
            .collect();
        assert_eq!(offsets, [&[1.0, 2.0][..], &[0.5, 0.25][..]]);
    }

    #[test]
    fn a_scaler_without_its_output_is_named_in_the_error() {
        let mut scaler = node("Scaler", ML_DOMAIN, "x", "y");
        scaler.output.clear();
        let mut graph = GraphProto {
            node: vec![scaler],
            ..GraphProto::default()
        };
        let err = apply(&mut graph).unwrap_err().to_string();
        assert!(err.contains("Scaler"), "{err}");
    }
}
