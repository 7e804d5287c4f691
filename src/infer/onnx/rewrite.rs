//! Exact rewrites of `ai.onnx.ml` nodes that tract does not run into ones it does, on the
//! protobuf before tract parses it:
//! - a `ZipMap` that feeds a graph output is dropped, and the output is its input: the
//!   probabilities tensor `[N, classes]` instead of a sequence of maps;
//! - a `Scaler` becomes `Cast(float)`, `Sub(offset)`, `Mul(scale)`: the spec's
//!   `(X - offset) * scale` in float, in that order;
//! - a classifier's string labels become their indices (tract types a string label
//!   output nowhere; the labels are read before, and the scores do not depend on them).
//!
//! Each rewrite computes what the node computed, bit for bit; anything else is left for
//! the unsupported-operator check to name.

use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};

use super::OnnxError;
use super::graph::{ML_DOMAIN, attribute};

/// ONNX's element type number for float.
const FLOAT: i32 = 1;
/// ONNX's attribute type number for an int.
const ATTR_INT: i32 = 2;

/// Applies every rewrite to `graph`.
pub fn apply(graph: &mut GraphProto) -> Result<(), OnnxError> {
    drop_final_zipmaps(graph);
    string_labels_as_indices(graph);
    rewrite_scalers(graph)
}

/// ONNX's attribute type number for a list of ints.
const ATTR_INTS: i32 = 7;

/// Replaces each `ai.onnx.ml` classifier's `classlabels_strings` by the class indices,
/// under the name of the integer labels its operator takes.
fn string_labels_as_indices(graph: &mut GraphProto) {
    for node in &mut graph.node {
        let ints_name = match node.op_type.as_str() {
            _ if node.domain != ML_DOMAIN => continue,
            "LinearClassifier" | "SVMClassifier" => "classlabels_ints",
            "TreeEnsembleClassifier" => "classlabels_int64s",
            _ => continue,
        };
        for attr in &mut node.attribute {
            if attr.name == "classlabels_strings" {
                let count = attr.strings.len() as i64;
                *attr = AttributeProto {
                    name: ints_name.into(),
                    r#type: ATTR_INTS,
                    ints: (0..count).collect(),
                    ..AttributeProto::default()
                };
            }
        }
    }
}

/// Drops each `ZipMap` whose output is a graph output; that output becomes the tensor the
/// `ZipMap` took (its type then unknown to the graph, inferred by tract).
fn drop_final_zipmaps(graph: &mut GraphProto) {
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let is_zipmap = node.domain == ML_DOMAIN && node.op_type == "ZipMap";
        let output = node.output.first().cloned().unwrap_or_default();
        let input = node.input.first().cloned().unwrap_or_default();
        let final_output = graph.output.iter_mut().find(|o| o.name == output);
        match (is_zipmap, final_output) {
            (true, Some(out)) if !input.is_empty() => {
                out.name = input;
                out.r#type = None;
            }
            _ => kept.push(node),
        }
    }
    graph.node = kept;
}

fn rewrite_scalers(graph: &mut GraphProto) -> Result<(), OnnxError> {
    let mut rewritten = Vec::with_capacity(graph.node.len());
    for (index, node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        if node.domain == ML_DOMAIN && node.op_type == "Scaler" {
            let (nodes, constants) = scaler(&node, index)?;
            rewritten.extend(nodes);
            graph.initializer.extend(constants);
        } else {
            rewritten.push(node);
        }
    }
    graph.node = rewritten;
    Ok(())
}

/// `Scaler` as three standard nodes and its two constants. Names are made unique with the
/// node's position, which no exporter's names collide with.
fn scaler(node: &NodeProto, index: usize) -> Result<(Vec<NodeProto>, Vec<TensorProto>), OnnxError> {
    let bad = |why: &str| OnnxError::BadNode {
        node: node.name.clone(),
        op: node.op_type.clone(),
        why: why.into(),
    };
    let (Some(x), Some(y)) = (node.input.first(), node.output.first()) else {
        return Err(bad("needs one input and one output"));
    };
    let floats = |name: &str| attribute(node, name).map(|a| a.floats.clone());
    let offset = floats("offset").unwrap_or_else(|| vec![0.0]);
    let scale = floats("scale").unwrap_or_else(|| vec![1.0]);
    if offset.is_empty() || scale.is_empty() {
        return Err(bad("offset and scale must not be empty"));
    }
    let prefix = format!("infergate.scaler{index}");
    let (cast, shifted) = (format!("{prefix}.cast"), format!("{prefix}.shifted"));
    let (offset_name, scale_name) = (format!("{prefix}.offset"), format!("{prefix}.scale"));
    let standard = |op: &str, inputs: [&str; 2], output: &str| NodeProto {
        input: inputs.iter().map(|s| (*s).to_owned()).collect(),
        output: vec![output.to_owned()],
        name: format!("{prefix}.{op}"),
        op_type: op.to_owned(),
        ..NodeProto::default()
    };
    let cast_node = NodeProto {
        input: vec![x.clone()],
        output: vec![cast.clone()],
        name: format!("{prefix}.Cast"),
        op_type: "Cast".into(),
        attribute: vec![AttributeProto {
            name: "to".into(),
            r#type: ATTR_INT,
            i: i64::from(FLOAT),
            ..AttributeProto::default()
        }],
        ..NodeProto::default()
    };
    let nodes = vec![
        cast_node,
        standard("Sub", [&cast, &offset_name], &shifted),
        standard("Mul", [&shifted, &scale_name], y),
    ];
    let constant = |name: String, values: Vec<f32>| TensorProto {
        dims: vec![values.len() as i64],
        data_type: FLOAT,
        float_data: values,
        name,
        ..TensorProto::default()
    };
    Ok((
        nodes,
        vec![constant(offset_name, offset), constant(scale_name, scale)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::ValueInfoProto;

    fn node(op: &str, domain: &str, input: &str, output: &str) -> NodeProto {
        NodeProto {
            input: vec![input.into()],
            output: vec![output.into()],
            name: op.into(),
            op_type: op.into(),
            domain: domain.into(),
            ..NodeProto::default()
        }
    }

    #[test]
    fn a_final_zipmap_is_dropped_and_its_input_becomes_the_output() {
        let mut graph = GraphProto {
            node: vec![
                node("LinearClassifier", ML_DOMAIN, "x", "probs"),
                node("ZipMap", ML_DOMAIN, "probs", "output_probability"),
            ],
            output: vec![ValueInfoProto {
                name: "output_probability".into(),
                ..ValueInfoProto::default()
            }],
            ..GraphProto::default()
        };
        apply(&mut graph).unwrap();
        assert_eq!(graph.node.len(), 1);
        assert_eq!(graph.output[0].name, "probs");
    }

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
