//! What an ONNX graph says about itself, read from its protobuf before tract sees it: the
//! inputs and outputs (names, element types, dimensions), the class labels an `ai.onnx.ml`
//! classifier carries, and the first operator nothing here can run.

use std::collections::HashSet;

use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::type_proto;
use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto, ValueInfoProto};

/// The domain of the classical machine-learning operators (scikit-learn, XGBoost, LightGBM
/// exports).
pub const ML_DOMAIN: &str = "ai.onnx.ml";

/// An element type, as ONNX numbers them (`TensorProto.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
    I32,
    I64,
    String,
    /// Any other type, by its ONNX number.
    Other(i32),
}

impl Elem {
    /// The type ONNX numbers `code` (`TensorProto.DataType`).
    pub fn from_onnx(code: i32) -> Self {
        match code {
            1 => Self::F32,
            11 => Self::F64,
            6 => Self::I32,
            7 => Self::I64,
            8 => Self::String,
            other => Self::Other(other),
        }
    }

    /// Whether JSON numbers can be cast to it.
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::F32 | Self::F64 | Self::I32 | Self::I64)
    }

    /// The ONNX name, for messages.
    pub fn onnx_name(self) -> String {
        match self {
            Self::F32 => "float".into(),
            Self::F64 => "double".into(),
            Self::I32 => "int32".into(),
            Self::I64 => "int64".into(),
            Self::String => "string".into(),
            Self::Other(code) => format!("type #{code}"),
        }
    }
}

/// One input or output of a graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub name: String,
    /// `None` for a non-tensor value (a sequence or a map, as `ZipMap` gives).
    pub elem: Option<Elem>,
    /// `None` where the graph gives no shape; per dimension, `None` when it is symbolic.
    pub dims: Option<Vec<Option<u64>>>,
}

impl Value {
    fn from_proto(info: &ValueInfoProto) -> Self {
        // A sequence or a map (as `ZipMap` gives) decodes to no value: tract's protobuf
        // knows tensor types only.
        let tensor = info
            .r#type
            .as_ref()
            .and_then(|t| t.value.as_ref())
            .map(|type_proto::Value::TensorType(tensor)| tensor);
        let dims = tensor.and_then(|t| t.shape.as_ref()).map(|shape| {
            shape
                .dim
                .iter()
                .map(|d| match d.value {
                    Some(dimension::Value::DimValue(n)) => u64::try_from(n).ok(),
                    _ => None,
                })
                .collect()
        });
        Self {
            name: info.name.clone(),
            elem: tensor.map(|t| Elem::from_onnx(t.elem_type)),
            dims,
        }
    }
}

/// The graph's inputs (initializers listed as inputs, as older exporters do, left out) and
/// outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub inputs: Vec<Value>,
    pub outputs: Vec<Value>,
}

/// Reads the signature of `graph`.
pub fn signature(graph: &GraphProto) -> Signature {
    let constants: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    Signature {
        inputs: graph
            .input
            .iter()
            .filter(|i| !constants.contains(i.name.as_str()))
            .map(Value::from_proto)
            .collect(),
        outputs: graph.output.iter().map(Value::from_proto).collect(),
    }
}

/// The classifiers of `ai.onnx.ml` and the attributes their labels are in.
const CLASSIFIERS: [(&str, &[&str]); 3] = [
    (
        "LinearClassifier",
        &["classlabels_strings", "classlabels_ints"],
    ),
    (
        "TreeEnsembleClassifier",
        &["classlabels_strings", "classlabels_int64s"],
    ),
    (
        "SVMClassifier",
        &["classlabels_strings", "classlabels_ints"],
    ),
];

/// Whether the graph imputes missing values (an `Imputer`) or routes them (a tree
/// ensemble that sends NaN down a side of its choosing, `nodes_missing_value_tracks_true`).
pub fn takes_missing(graph: &GraphProto) -> bool {
    graph.node.iter().any(|node| {
        node.domain == ML_DOMAIN
            && (node.op_type == "Imputer"
                || node.op_type.starts_with("TreeEnsemble")
                    && attribute(node, "nodes_missing_value_tracks_true")
                        .is_some_and(|a| a.ints.iter().any(|&t| t != 0)))
    })
}

/// The regressors of `ai.onnx.ml`.
const REGRESSORS: [&str; 3] = ["LinearRegressor", "TreeEnsembleRegressor", "SVMRegressor"];

/// Whether the graph holds an `ai.onnx.ml` regressor.
pub fn has_ml_regressor(graph: &GraphProto) -> bool {
    graph
        .node
        .iter()
        .any(|node| node.domain == ML_DOMAIN && REGRESSORS.contains(&node.op_type.as_str()))
}

/// The class labels of the graph's `ai.onnx.ml` classifier, in class-id order, as text
/// (integer labels written out); `None` when the graph has no such classifier.
pub fn class_labels(graph: &GraphProto) -> Option<Vec<String>> {
    graph.node.iter().find_map(|node| {
        let (_, attrs) = CLASSIFIERS
            .iter()
            .find(|(op, _)| node.domain == ML_DOMAIN && node.op_type == *op)?;
        attrs
            .iter()
            .find_map(|name| labels_in(attribute(node, name)?))
    })
}

fn labels_in(attr: &AttributeProto) -> Option<Vec<String>> {
    if !attr.strings.is_empty() {
        return Some(
            attr.strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        );
    }
    (!attr.ints.is_empty()).then(|| attr.ints.iter().map(i64::to_string).collect())
}

/// The attribute `name` of `node`.
pub fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// The first node whose operator is not in `supported` (names as tract registers them),
/// as `"domain.Op (node 'name')"`.
pub fn first_unsupported(graph: &GraphProto, supported: impl Fn(&str) -> bool) -> Option<String> {
    graph.node.iter().find(|n| !supported(&n.op_type)).map(|n| {
        let domain = if n.domain.is_empty() {
            "ai.onnx"
        } else {
            n.domain.as_str()
        };
        format!("{domain}.{} (node {:?})", n.op_type, n.name)
    })
}

/// Checks that every constant tensor (initializers, and `Constant` nodes' values) holds the
/// values its dimensions promise, in the file itself: a tensor that declares a billion
/// elements and carries none would otherwise be allocated, zeroed, by the engine. Tensors
/// in external files are refused (the file would be read from a path the model names).
pub fn check_constants(graph: &GraphProto) -> Result<(), String> {
    let node_values = graph
        .node
        .iter()
        .flat_map(|n| n.attribute.iter())
        .filter_map(|a| a.t.as_ref());
    for tensor in graph.initializer.iter().chain(node_values) {
        let name = &tensor.name;
        if !tensor.external_data.is_empty() || tensor.data_location == Some(1) {
            return Err(format!(
                "tensor {name:?} is stored in an external file; embed it in model.onnx"
            ));
        }
        let declared = tensor
            .dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
            .ok_or_else(|| format!("tensor {name:?} has dimensions {:?}", tensor.dims))?;
        let width = match Elem::from_onnx(tensor.data_type) {
            Elem::F64 | Elem::I64 => 8,
            Elem::F32 | Elem::I32 => 4,
            // Narrower and other types: at least a byte each, when raw.
            _ => 1,
        };
        let held = if tensor.raw_data.is_empty() {
            (tensor.float_data.len()
                + tensor.int32_data.len()
                + tensor.int64_data.len()
                + tensor.double_data.len()
                + tensor.uint64_data.len()
                + tensor.string_data.len()) as u64
        } else {
            tensor.raw_data.len() as u64 / width
        };
        // A scalar may be declared with no dims and one value; nothing else may hold fewer
        // values than it declares.
        if held < declared {
            return Err(format!(
                "tensor {name:?} declares {declared} values and holds {held}"
            ));
        }
    }
    Ok(())
}
