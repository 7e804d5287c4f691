//! A signature declared beside the graph (a Triton repository's `config.pbtxt`, read by
//! `repository/triton.rs`), checked against what the graph itself says: a declaration that
//! contradicts the graph refuses the version, naming the difference.

use super::graph::{Elem, Signature, Value};

/// What a configuration declares of a model's inputs and outputs, Triton's way: with
/// `max_batch_size` above 0 the dims leave out the batch dimension, with 0 they are the
/// whole shape; -1 is a dimension of any size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The most rows one run takes; 0: the model does not batch (its dims are whole).
    pub max_batch_size: usize,
    pub inputs: Vec<DeclaredTensor>,
    pub outputs: Vec<DeclaredTensor>,
    /// The labels of the first output that names a label file, one per line.
    pub labels: Option<Vec<String>>,
}

/// One declared input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTensor {
    pub name: String,
    pub elem: Elem,
    pub dims: Vec<i64>,
    /// The shape the graph sees, where it differs from `dims` (Triton's `reshape`).
    pub reshape: Option<Vec<i64>>,
}

impl Declared {
    /// Checks the declaration against the graph's signature: the same input and output
    /// names, the same element types, and dims that fit the graph's. The message says what
    /// differs.
    pub fn check(&self, graph: &Signature) -> Result<(), String> {
        for (what, declared, actual) in [
            ("input", &self.inputs, &graph.inputs),
            ("output", &self.outputs, &graph.outputs),
        ] {
            for d in declared {
                let Some(value) = actual.iter().find(|v| v.name == d.name) else {
                    let names: Vec<&str> = actual.iter().map(|v| v.name.as_str()).collect();
                    return Err(format!(
                        "{what} {:?} is not one of the graph's ({})",
                        d.name,
                        names.join(", ")
                    ));
                };
                self.check_one(what, d, value)?;
            }
        }
        // Triton refuses a model whose required input is not declared: it could not be fed.
        if let Some(missing) = graph
            .inputs
            .iter()
            .find(|v| !self.inputs.iter().any(|d| d.name == v.name))
        {
            return Err(format!(
                "the graph's input {:?} is not declared",
                missing.name
            ));
        }
        if self.outputs.is_empty() {
            return Err("no output is declared".into());
        }
        Ok(())
    }

    fn check_one(&self, what: &str, d: &DeclaredTensor, value: &Value) -> Result<(), String> {
        if let Some(elem) = value.elem
            && elem != d.elem
        {
            return Err(format!(
                "{what} {:?} is declared {}, the graph's is {}",
                d.name,
                d.elem.onnx_name(),
                elem.onnx_name()
            ));
        }
        // The shape the graph sees: the reshape's, else the dims; with the batch in front
        // where the model batches.
        let mut shape = d.reshape.clone().unwrap_or_else(|| d.dims.clone());
        if self.max_batch_size > 0 {
            shape.insert(0, -1);
        }
        let Some(graph_dims) = &value.dims else {
            return Ok(());
        };
        let fits = shape.len() == graph_dims.len()
            && shape
                .iter()
                .zip(graph_dims)
                .all(|(&want, &have)| match have {
                    // A symbolic dimension takes any size; a fixed one only its own, or -1.
                    None => true,
                    Some(have) => want == -1 || u64::try_from(want) == Ok(have),
                });
        if !fits {
            let show = |dims: Vec<String>| format!("[{}]", dims.join(", "));
            let declared = show(shape.iter().map(i64::to_string).collect());
            let graph = show(
                graph_dims
                    .iter()
                    .map(|d| d.map_or("N".into(), |n| n.to_string()))
                    .collect(),
            );
            return Err(format!(
                "{what} {:?} is declared {declared} (max_batch_size {} {}), the graph's is \
                 {graph}",
                d.name,
                self.max_batch_size,
                if self.max_batch_size > 0 {
                    "adds the batch dimension"
                } else {
                    "counts it in the dims"
                }
            ));
        }
        Ok(())
    }

    /// The declared output the model answers with: the first of a float type.
    pub fn served_output(&self) -> Option<&DeclaredTensor> {
        self.outputs
            .iter()
            .find(|o| matches!(o.elem, Elem::F32 | Elem::F64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(name: &str, elem: Elem, dims: &[Option<u64>]) -> Value {
        Value {
            name: name.into(),
            elem: Some(elem),
            dims: Some(dims.to_vec()),
        }
    }

    fn tensor(name: &str, elem: Elem, dims: &[i64]) -> DeclaredTensor {
        DeclaredTensor {
            name: name.into(),
            elem,
            dims: dims.to_vec(),
            reshape: None,
        }
    }

    fn graph() -> Signature {
        Signature {
            inputs: vec![value("float_input", Elem::F32, &[None, Some(4)])],
            outputs: vec![
                value("label", Elem::I64, &[None]),
                value("probabilities", Elem::F32, &[None, Some(3)]),
            ],
        }
    }

    fn iris(max_batch_size: usize, dims: &[i64]) -> Declared {
        Declared {
            max_batch_size,
            inputs: vec![tensor("float_input", Elem::F32, dims)],
            outputs: vec![tensor("probabilities", Elem::F32, &[3])],
            labels: None,
        }
    }

    #[test]
    fn a_declaration_that_fits_the_graph_passes() {
        assert_eq!(iris(8, &[4]).check(&graph()), Ok(()));
        assert_eq!(iris(8, &[-1]).check(&graph()), Ok(()));
        let mut whole = iris(0, &[-1, 4]);
        whole.outputs[0].dims = vec![-1, 3];
        assert_eq!(whole.check(&graph()), Ok(()));
        assert_eq!(
            iris(8, &[4]).served_output().map(|o| o.name.as_str()),
            Some("probabilities")
        );
    }

    #[test]
    fn every_contradiction_is_named() {
        let cases = [
            (iris(8, &[5]), "is declared [-1, 5] (max_batch_size 8 adds"),
            (iris(0, &[4]), "is declared [4] (max_batch_size 0 counts"),
            (
                Declared {
                    inputs: vec![tensor("float_input", Elem::I64, &[4])],
                    ..iris(8, &[4])
                },
                "input \"float_input\" is declared int64, the graph's is float",
            ),
            (
                Declared {
                    inputs: vec![tensor("x", Elem::F32, &[4])],
                    ..iris(8, &[4])
                },
                "input \"x\" is not one of the graph's (float_input)",
            ),
            (
                Declared {
                    outputs: vec![tensor("scores", Elem::F32, &[3])],
                    ..iris(8, &[4])
                },
                "output \"scores\" is not one of the graph's (label, probabilities)",
            ),
            (
                Declared {
                    inputs: Vec::new(),
                    ..iris(8, &[4])
                },
                "the graph's input \"float_input\" is not declared",
            ),
        ];
        for (declared, want) in cases {
            let err = declared.check(&graph()).unwrap_err();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
    }

    #[test]
    fn a_reshape_is_what_the_graph_sees() {
        let mut declared = iris(8, &[2, 2]);
        assert!(declared.check(&graph()).is_err());
        declared.inputs[0].reshape = Some(vec![4]);
        assert_eq!(declared.check(&graph()), Ok(()));
    }
}
