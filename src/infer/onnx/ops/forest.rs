//! The trees of a `TreeEnsembleClassifier` or `TreeEnsembleRegressor`, evaluated as ONNX
//! Runtime evaluates them: each tree walked from its root (a branch goes to its true child
//! where `x <mode> value` holds, or where `x` is NaN and the node says missing values go
//! there), each reached leaf's weights added to their outputs, trees in order, in `f32`;
//! an average divides by the tree count. Plain indexing throughout: the ids come from the
//! file, and [`super::super::trees::check`] has already refused ids out of range and
//! cycles, so a walk is bounded by its tree's size.
//!
//! Ours rather than tract's: tract walks its table with unchecked indexing and looks each
//! leaf up by skipping through every leaf before it, which made a 20-tree forest cost
//! 140 µs a row (BENCHMARKS.md, ONNX).

use std::collections::BTreeMap;
use std::sync::Arc;

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::super::graph::attribute;

/// How a branch compares a feature with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

impl Mode {
    fn holds(self, x: f32, value: f32) -> bool {
        match self {
            Self::Leq => x <= value,
            Self::Lt => x < value,
            Self::Gte => x >= value,
            Self::Gt => x > value,
            Self::Eq => x == value,
            Self::Neq => x != value,
        }
    }
}

/// A node in 20 bytes (a walk reads one per level): a branch's comparison, feature, value
/// and children, or (`mode` `None`) a leaf, whose weights are `weights[yes..no]` — or, where
/// it has one (`yes` is [`ONE_WEIGHT`]), `value` for output `feature`.
#[derive(Debug, Clone, Copy)]
struct Node {
    mode: Option<Mode>,
    missing_goes_true: bool,
    feature: u32,
    value: f32,
    yes: u32,
    no: u32,
}

/// A leaf's `yes` when its one weight is in the node.
const ONE_WEIGHT: u32 = u32::MAX;

/// How the trees' weights for one output are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Aggregate {
    Sum,
    Average,
}

/// A parsed forest.
#[derive(Debug)]
pub(super) struct Forest {
    /// Each tree's root in `nodes`, in tree id order; a tree's nodes follow its root.
    roots: Vec<usize>,
    nodes: Vec<Node>,
    /// Leaf weights: the output they add to, and the weight.
    weights: Vec<(usize, f32)>,
    outputs: usize,
    aggregate: Aggregate,
    /// The highest feature index a branch reads.
    max_feature: usize,
    /// The one comparison every branch makes, when they all make the same (what the
    /// exporters write): the walk then compares without looking the mode up.
    uniform: Option<Mode>,
    /// Added to each row's scores (`base_values`), one per output.
    base: Option<Vec<f32>>,
}

/// A parsed forest shared by the operators made of it, one operator per forest: equal when
/// it is the same forest (tract compares operators to merge equal nodes).
#[derive(Debug, Clone)]
pub(super) struct Shared(Arc<Forest>);

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Shared {}

impl std::ops::Deref for Shared {
    type Target = Forest;
    fn deref(&self) -> &Forest {
        &self.0
    }
}

/// The node's `base_values`, one per output, if it has them.
fn base_values(node: &NodeProto, outputs: usize) -> TractResult<Option<Vec<f32>>> {
    if attribute(node, "base_values_as_tensor").is_some() {
        bail!("base_values_as_tensor (double base values) is not served");
    }
    match attribute(node, "base_values").map(|a| a.floats.clone()) {
        None => Ok(None),
        Some(values) if values.len() == outputs => Ok(Some(values)),
        Some(values) => bail!("{} base_values for {outputs} outputs", values.len()),
    }
}

/// The node's string attribute `name`, or `default`.
pub(super) fn text<'a>(node: &'a NodeProto, name: &str, default: &'a str) -> &'a str {
    attribute(node, name)
        .and_then(|a| std::str::from_utf8(&a.s).ok())
        .unwrap_or(default)
}

/// The ints of attribute `name` (empty when absent).
fn ints<'a>(node: &'a NodeProto, name: &str) -> &'a [i64] {
    attribute(node, name).map_or(&[], |a| a.ints.as_slice())
}

fn index(v: i64) -> TractResult<usize> {
    usize::try_from(v).map_err(|_| format_err!("a negative id ({v})"))
}

impl Forest {
    /// Parses the forest of `node`, whose leaf attributes are `<leaf>_ids`,
    /// `<leaf>_treeids`, `<leaf>_nodeids` and `<leaf>_weights` ("class" or "target"), for
    /// `outputs` outputs, with its `base_values`.
    pub(super) fn parse(
        node: &NodeProto,
        leaf: &str,
        outputs: usize,
        aggregate: Aggregate,
    ) -> TractResult<Shared> {
        let base = base_values(node, outputs)?;
        for tensor_form in [
            "nodes_values_as_tensor",
            &format!("{leaf}_weights_as_tensor"),
        ] {
            if attribute(node, tensor_form).is_some() {
                bail!("{tensor_form} (double thresholds or weights) is not served");
            }
        }
        let tree_ids = ints(node, "nodes_treeids");
        let node_ids = ints(node, "nodes_nodeids");
        let features = ints(node, "nodes_featureids");
        let yes = ints(node, "nodes_truenodeids");
        let no = ints(node, "nodes_falsenodeids");
        let tracks = ints(node, "nodes_missing_value_tracks_true");
        let values = attribute(node, "nodes_values").map_or(&[][..], |a| a.floats.as_slice());
        let modes = attribute(node, "nodes_modes").map_or(&[][..], |a| a.strings.as_slice());
        let n = tree_ids.len();
        if [
            node_ids.len(),
            features.len(),
            yes.len(),
            no.len(),
            values.len(),
            modes.len(),
        ]
        .iter()
        .any(|&len| len != n)
        {
            bail!("the nodes_* attributes differ in length");
        }
        // Tree id -> its nodes' positions in the attributes, in node id order.
        let mut trees: BTreeMap<i64, BTreeMap<i64, usize>> = BTreeMap::new();
        for i in 0..n {
            trees.entry(tree_ids[i]).or_default().insert(node_ids[i], i);
        }
        let leaf_trees = ints(node, &format!("{leaf}_treeids"));
        let leaf_nodes = ints(node, &format!("{leaf}_nodeids"));
        let leaf_outputs = ints(node, &format!("{leaf}_ids"));
        let leaf_weights =
            attribute(node, &format!("{leaf}_weights")).map_or(&[][..], |a| a.floats.as_slice());
        // (tree, node) -> its weights, in the order the attributes list them.
        let mut by_leaf: BTreeMap<(i64, i64), Vec<(usize, f32)>> = BTreeMap::new();
        for (j, &output) in leaf_outputs.iter().enumerate() {
            let (Some(&t), Some(&nd), Some(&w)) =
                (leaf_trees.get(j), leaf_nodes.get(j), leaf_weights.get(j))
            else {
                bail!("the {leaf}_* attributes differ in length");
            };
            let output = index(output)?;
            if output >= outputs {
                bail!("{leaf} id {output} of {outputs}");
            }
            by_leaf.entry((t, nd)).or_default().push((output, w));
        }
        let (mut roots, mut nodes, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        let mut max_feature = 0;
        for (tree, members) in &trees {
            let root = nodes.len();
            roots.push(root);
            // Node ids number the tree's nodes 0..n (trees.rs): id k is at root + k.
            for (&id, &i) in members {
                if index(id)? != nodes.len() - root {
                    bail!("tree {tree}: node ids do not number its nodes from 0");
                }
                let mode = match modes[i].as_slice() {
                    b"LEAF" => None,
                    b"BRANCH_LEQ" => Some(Mode::Leq),
                    b"BRANCH_LT" => Some(Mode::Lt),
                    b"BRANCH_GTE" => Some(Mode::Gte),
                    b"BRANCH_GT" => Some(Mode::Gt),
                    b"BRANCH_EQ" => Some(Mode::Eq),
                    b"BRANCH_NEQ" => Some(Mode::Neq),
                    other => bail!("node mode {:?}", String::from_utf8_lossy(other)),
                };
                let row = |v: usize| u32::try_from(v).map_err(|_| format_err!("{v} is too large"));
                nodes.push(match mode {
                    Some(mode) => {
                        let feature = index(features[i])?;
                        max_feature = max_feature.max(feature);
                        Node {
                            mode: Some(mode),
                            missing_goes_true: tracks.get(i).is_some_and(|&t| t != 0),
                            feature: row(feature)?,
                            value: values[i],
                            yes: row(root + index(yes[i])?)?,
                            no: row(root + index(no[i])?)?,
                        }
                    }
                    None => match by_leaf.remove(&(*tree, id)).unwrap_or_default()[..] {
                        // A regressor's leaf: its one weight in the node itself.
                        [(k, w)] => Node {
                            mode: None,
                            missing_goes_true: false,
                            feature: row(k)?,
                            value: w,
                            yes: ONE_WEIGHT,
                            no: ONE_WEIGHT,
                        },
                        ref several => {
                            let from = weights.len();
                            weights.extend_from_slice(several);
                            Node {
                                mode: None,
                                missing_goes_true: false,
                                feature: 0,
                                value: 0.0,
                                yes: row(from)?,
                                no: row(weights.len())?,
                            }
                        }
                    },
                });
            }
            let size = nodes.len();
            let outside = |child: u32| child as usize >= size;
            if nodes[root..]
                .iter()
                .any(|node| node.mode.is_some() && (outside(node.yes) || outside(node.no)))
            {
                bail!("tree {tree} branches out of itself");
            }
        }
        if !by_leaf.is_empty() {
            bail!("{leaf} weights for nodes that are not leaves");
        }
        let mut modes = nodes.iter().filter_map(|n| n.mode);
        let first = modes.next();
        let uniform = first.filter(|&m| modes.all(|other| other == m));
        Ok(Shared(Arc::new(Self {
            roots,
            nodes,
            weights,
            outputs,
            aggregate,
            max_feature,
            uniform,
            base,
        })))
    }

    /// Outputs per row.
    pub(super) fn outputs(&self) -> usize {
        self.outputs
    }

    /// Adds each tree's weights for `row` into `out` (one value per output, zero to start
    /// with); averages them if the aggregate says so.
    fn score(&self, row: &[f32], out: &mut [f32]) -> TractResult<()> {
        // One walk per comparison, so that a forest of one kind compares inline.
        match self.uniform {
            Some(Mode::Leq) => self.walk(row, out, |_, x, v| x <= v),
            Some(Mode::Lt) => self.walk(row, out, |_, x, v| x < v),
            _ => self.walk(row, out, Mode::holds),
        }?;
        if self.aggregate == Aggregate::Average {
            let trees = self.roots.len() as f32;
            out.iter_mut().for_each(|v| *v /= trees);
        }
        Ok(())
    }

    fn walk(
        &self,
        row: &[f32],
        out: &mut [f32],
        holds: impl Fn(Mode, f32, f32) -> bool,
    ) -> TractResult<()> {
        for (t, &root) in self.roots.iter().enumerate() {
            let end = self.roots.get(t + 1).copied().unwrap_or(self.nodes.len());
            let mut at = root;
            // A walk visits each node of its tree at most once (no cycles: trees.rs).
            let mut steps = end - root;
            loop {
                let node = self.nodes[at];
                let Some(mode) = node.mode else {
                    if node.yes == ONE_WEIGHT {
                        out[node.feature as usize] += node.value;
                    } else {
                        for &(k, w) in &self.weights[node.yes as usize..node.no as usize] {
                            out[k] += w;
                        }
                    }
                    break;
                };
                let x = row[node.feature as usize];
                let go = holds(mode, x, node.value) || node.missing_goes_true && x.is_nan();
                at = if go { node.yes } else { node.no } as usize;
                steps = steps
                    .checked_sub(1)
                    .ok_or_else(|| format_err!("tree {t} has a cycle"))?;
            }
        }
        Ok(())
    }

    /// The scores of every row of `input` (`[N, F]`, any numeric type, read as `f32`):
    /// N, and N × `outputs` values row after row, base values added.
    pub(super) fn scores(&self, input: &Tensor) -> TractResult<(usize, Vec<f32>)> {
        let input = input.cast_to::<f32>()?;
        let view = input.to_plain_array_view::<f32>()?;
        let [rows, width] = *view.shape() else {
            bail!(
                "a tree ensemble takes [N, features], not {:?}",
                view.shape()
            );
        };
        if width <= self.max_feature {
            bail!(
                "the input has {width} features; the trees read feature {}",
                self.max_feature
            );
        }
        let values: Vec<f32> = view.iter().copied().collect();
        let mut out = vec![0f32; rows * self.outputs];
        for (row, scores) in values
            .chunks_exact(width.max(1))
            .zip(out.chunks_exact_mut(self.outputs.max(1)))
        {
            self.score(row, scores)?;
            if let Some(base) = &self.base {
                scores.iter_mut().zip(base).for_each(|(s, b)| *s += b);
            }
        }
        Ok((rows, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::AttributeProto;

    fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: ints.to_vec(),
            ..AttributeProto::default()
        }
    }

    /// Two stumps over feature 0: `x <= 1` (true: +1 to output 0, else +2 to output 1) and
    /// `x < 3` with missing values sent true (true: +10 to output 0, else +20 to output 1).
    fn two_stumps() -> NodeProto {
        let floats = |name: &str, values: &[f32]| AttributeProto {
            name: name.into(),
            floats: values.to_vec(),
            ..AttributeProto::default()
        };
        let modes = ["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"];
        NodeProto {
            attribute: vec![
                ints_attr("nodes_treeids", &[0, 0, 0, 1, 1, 1]),
                ints_attr("nodes_nodeids", &[0, 1, 2, 0, 1, 2]),
                ints_attr("nodes_featureids", &[0, 0, 0, 0, 0, 0]),
                ints_attr("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]),
                ints_attr("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0]),
                ints_attr("nodes_missing_value_tracks_true", &[0, 0, 0, 1, 0, 0]),
                floats("nodes_values", &[1.0, 0.0, 0.0, 3.0, 0.0, 0.0]),
                AttributeProto {
                    name: "nodes_modes".into(),
                    strings: modes.iter().map(|m| m.as_bytes().to_vec()).collect(),
                    ..AttributeProto::default()
                },
                ints_attr("target_treeids", &[0, 0, 1, 1]),
                ints_attr("target_nodeids", &[1, 2, 1, 2]),
                ints_attr("target_ids", &[0, 1, 0, 1]),
                floats("target_weights", &[1.0, 2.0, 10.0, 20.0]),
                floats("base_values", &[0.5, 0.0]),
            ],
            ..NodeProto::default()
        }
    }

    fn scores(forest: &Forest, rows: &[f32]) -> Vec<f32> {
        let input = Tensor::from_shape(&[rows.len(), 1], rows).unwrap();
        forest.scores(&input).unwrap().1
    }

    #[test]
    fn each_tree_adds_its_leaf_weights_plus_the_base() {
        let forest = Forest::parse(&two_stumps(), "target", 2, Aggregate::Sum).unwrap();
        // 0.5: both true; 2: first false, second true; 5: both false.
        assert_eq!(
            scores(&forest, &[0.5, 2.0, 5.0]),
            [11.5, 0.0, 10.5, 2.0, 0.5, 22.0]
        );
        // NaN: `NaN <= 1` fails (false: output 1), the second tree sends it true.
        assert_eq!(scores(&forest, &[f32::NAN]), [10.5, 2.0]);
    }

    #[test]
    fn an_average_divides_by_the_tree_count() {
        let forest = Forest::parse(&two_stumps(), "target", 2, Aggregate::Average).unwrap();
        assert_eq!(scores(&forest, &[0.5]), [6.0, 0.0]);
    }

    #[test]
    fn an_input_narrower_than_the_features_read_is_an_error() {
        let mut node = two_stumps();
        node.attribute[2] = ints_attr("nodes_featureids", &[3, 0, 0, 0, 0, 0]);
        let forest = Forest::parse(&node, "target", 2, Aggregate::Sum).unwrap();
        let input = Tensor::from_shape(&[1, 2], &[0f32, 0.0]).unwrap();
        let err = forest.scores(&input).unwrap_err().to_string();
        assert!(err.contains("read feature 3"), "{err}");
    }
}
