//! Exact rewrites of `ai.onnx.ml` nodes that tract does not run into ones it does, on the
//! protobuf before tract parses it:
//! - a `ZipMap` that feeds a graph output is dropped, and the output is its input: the
//!   probabilities tensor `[N, classes]` instead of a sequence of maps;
//! - a classifier's string labels become their indices (tract types a string label
//!   output nowhere; the labels are read before, and the scores do not depend on them);
//! - a `Scaler` becomes `Cast(float)`, `Sub(offset)`, `Mul(scale)` ([`scaler`]);
//! - an `Imputer` becomes `Where(IsNaN(x) or Equal(x, replaced), imputed, x)`
//!   ([`imputer`]).
//!
//! Each rewrite computes what the node computed, bit for bit; anything else is left for
//! the unsupported-operator check to name (or to an operator of ours, [`super::ops`]).

mod imputer;
mod scaler;

use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, TensorProto};

use super::OnnxError;
use super::graph::ML_DOMAIN;

/// ONNX's element type numbers.
const FLOAT: i32 = 1;
const INT64: i32 = 7;
/// ONNX's attribute type number for an int.
const ATTR_INT: i32 = 2;
/// ONNX's attribute type number for a list of ints.
const ATTR_INTS: i32 = 7;

/// Applies every rewrite to `graph`.
pub fn apply(graph: &mut GraphProto) -> Result<(), OnnxError> {
    drop_final_zipmaps(graph);
    string_labels_as_indices(graph);
    expand(graph, "Scaler", scaler::expand)?;
    expand(graph, "Imputer", imputer::expand)
}

/// Standard nodes and their constants, standing for one `ai.onnx.ml` node.
struct Expansion {
    nodes: Vec<NodeProto>,
    constants: Vec<TensorProto>,
}

/// Replaces each `ai.onnx.ml` node `op` of `graph` by its expansion. `index` (the node's
/// position) makes the new names unique: no exporter's names collide with `infergate.`.
fn expand(
    graph: &mut GraphProto,
    op: &str,
    expansion: fn(&NodeProto, &Names) -> Result<Expansion, OnnxError>,
) -> Result<(), OnnxError> {
    let mut rewritten = Vec::with_capacity(graph.node.len());
    for (index, node) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        if node.domain == ML_DOMAIN && node.op_type == op {
            let names = Names(format!("infergate.{}{index}", op.to_lowercase()));
            let Expansion { nodes, constants } = expansion(&node, &names)?;
            rewritten.extend(nodes);
            graph.initializer.extend(constants);
        } else {
            rewritten.push(node);
        }
    }
    graph.node = rewritten;
    Ok(())
}

/// The names of one expansion's nodes and tensors: its prefix, a dot, the part.
struct Names(String);

impl Names {
    fn of(&self, part: &str) -> String {
        format!("{}.{part}", self.0)
    }

    /// A standard node `op` from `inputs` to `output`, named for its part.
    fn node(&self, op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.to_owned()],
            name: self.of(op),
            op_type: op.to_owned(),
            ..NodeProto::default()
        }
    }

    /// `Cast(to)` from `input` to `output`.
    fn cast(&self, to: i32, input: &str, output: &str) -> NodeProto {
        NodeProto {
            attribute: vec![AttributeProto {
                name: "to".into(),
                r#type: ATTR_INT,
                i: i64::from(to),
                ..AttributeProto::default()
            }],
            ..self.node("Cast", &[input], output)
        }
    }
}

/// A 1-D float constant.
fn floats(name: String, values: Vec<f32>) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: FLOAT,
        float_data: values,
        name,
        ..TensorProto::default()
    }
}

/// A 1-D int64 constant.
fn int64s(name: String, values: Vec<i64>) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: INT64,
        int64_data: values,
        name,
        ..TensorProto::default()
    }
}

/// The error for a node that cannot be rewritten.
fn bad(node: &NodeProto, why: &str) -> OnnxError {
    OnnxError::BadNode {
        node: node.name.clone(),
        op: node.op_type.clone(),
        why: why.into(),
    }
}

/// The node's one input and one output.
fn one_in_one_out(node: &NodeProto) -> Result<(&str, &str), OnnxError> {
    match (node.input.as_slice(), node.output.as_slice()) {
        ([x], [y]) if !x.is_empty() && !y.is_empty() => Ok((x, y)),
        _ => Err(bad(node, "needs one input and one output")),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::ValueInfoProto;

    pub(super) fn node(op: &str, domain: &str, input: &str, output: &str) -> NodeProto {
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
}
