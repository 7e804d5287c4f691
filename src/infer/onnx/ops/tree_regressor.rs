//! `ai.onnx.ml` `TreeEnsembleRegressor`: each row's `n_targets` values are the sum (or the
//! average) of the leaf weights its trees reach, plus `base_values`, as ONNX Runtime
//! computes them (in `f32`, trees in order). The trees are tract's own
//! ([`TreeEnsemble`], the scoring half of its `TreeEnsembleClassifier`); only the parsing
//! is ours, because tract's ONNX side parses the ensemble as a classifier only.
//!
//! The forest has passed [`super::super::trees::check`] before this parser sees it.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx_opl::ml::tree::{Aggregate, Cmp, TreeEnsemble, TreeEnsembleData};
use tract_onnx_opl::ml::tree_ensemble_classifier::TreeEnsembleClassifier as TreeScores;

/// The operator: the forest, and what is added to each row's values.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub(super) struct TreeEnsembleRegressor {
    ensemble: TreeEnsemble,
    base_values: Option<Arc<Tensor>>,
}

/// Parses a `TreeEnsembleRegressor` node (tract's `OpBuilder`).
pub(super) fn parse(
    _ctx: &ParsingContext<'_>,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let targets: usize = node.get_attr("n_targets")?;
    let aggregate = match node
        .get_attr_opt::<&str>("aggregate_function")?
        .unwrap_or("SUM")
    {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Avg,
        other => bail!("aggregate_function {other} is not served (SUM and AVERAGE are)"),
    };
    match node
        .get_attr_opt::<&str>("post_transform")?
        .unwrap_or("NONE")
    {
        "NONE" => {}
        other => bail!("post_transform {other} is not served on a regressor (NONE is)"),
    }
    for tensor_form in ["nodes_values_as_tensor", "target_weights_as_tensor"] {
        if node.attribute.iter().any(|a| a.name == tensor_form) {
            bail!("{tensor_form} (double thresholds or weights) is not served");
        }
    }
    let base_values = match node.get_attr_opt_vec::<f32>("base_values")? {
        Some(values) => {
            node.expect_attr("base_values", values.len() == targets, || {
                format!("{} values for {targets} targets", values.len())
            })?;
            Some(
                tensor1(&values)
                    .into_shape(&[1, targets])?
                    .into_arc_tensor(),
            )
        }
        None => None,
    };
    let ensemble = forest(node, targets, aggregate)?;
    Ok((
        expand(TreeEnsembleRegressor {
            ensemble,
            base_values,
        }),
        vec![],
    ))
}

fn mode(s: &str) -> TractResult<Option<Cmp>> {
    Ok(Some(match s {
        "BRANCH_LEQ" => Cmp::LessEqual,
        "BRANCH_LT" => Cmp::Less,
        "BRANCH_GT" => Cmp::Greater,
        "BRANCH_EQ" => Cmp::Equal,
        "BRANCH_NEQ" => Cmp::NotEqual,
        "LEAF" => return Ok(None),
        // Rewritten as BRANCH_LT before parsing (trees.rs); tract's table cannot hold it.
        other => bail!("node mode {other} is not served"),
    }))
}

/// The forest in tract's table layout: per tree its root row; per node five `u32`s
/// (branch: feature, true row, false row, threshold bits, comparison | NaN-goes-true
/// flag; leaf: its first and past-the-end rows in the leaf table); per leaf weight its
/// target and its bits. The layout tract-onnx's classifier parser builds.
fn forest(node: &NodeProto, targets: usize, aggregate: Aggregate) -> TractResult<TreeEnsemble> {
    let tree_ids: Vec<usize> = node.get_attr_vec("nodes_treeids")?;
    let n = tree_ids.len();
    let same_len = |name: &str, len: usize| node.expect_attr(name, len == n, "one per node");
    let node_ids: Vec<usize> = node.get_attr_vec("nodes_nodeids")?;
    let feature_ids: Vec<usize> = node.get_attr_vec("nodes_featureids")?;
    let true_ids: Vec<usize> = node.get_attr_vec("nodes_truenodeids")?;
    let false_ids: Vec<usize> = node.get_attr_vec("nodes_falsenodeids")?;
    let values: Vec<f32> = node.get_attr_vec("nodes_values")?;
    let modes: Vec<&str> = node.get_attr_vec("nodes_modes")?;
    let nan_true: Vec<bool> = node
        .get_attr_opt_vec("nodes_missing_value_tracks_true")?
        .unwrap_or_else(|| vec![false; n]);
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", feature_ids.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_values", values.len()),
        ("nodes_modes", modes.len()),
        ("nodes_missing_value_tracks_true", nan_true.len()),
    ] {
        same_len(name, len)?;
    }
    let leaf_trees: Vec<usize> = node.get_attr_vec("target_treeids")?;
    let leaf_nodes: Vec<usize> = node.get_attr_vec("target_nodeids")?;
    let leaf_targets: Vec<usize> = node.get_attr_vec("target_ids")?;
    let weights: Vec<f32> = node.get_attr_vec("target_weights")?;

    // Nodes by (tree, id), leaves likewise: a tree's rows are its node ids from its root
    // row on (trees.rs checked that they number 0..n).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (tree_ids[i], node_ids[i]));
    let mut leaf_order: Vec<usize> = (0..leaf_trees.len()).collect();
    leaf_order.sort_by_key(|&j| (leaf_trees[j], leaf_nodes[j]));
    let mut leaf_order = leaf_order.into_iter().peekable();

    let row = |v: usize| u32::try_from(v).map_err(|_| format_err!("{v} is too large"));
    let mut roots: Vec<u32> = Vec::new();
    let mut current_tree = None;
    let mut nodes: Vec<u32> = Vec::with_capacity(n * 5);
    let mut leaves: Vec<u32> = Vec::with_capacity(weights.len() * 2);
    for i in order {
        if current_tree != Some(tree_ids[i]) {
            current_tree = Some(tree_ids[i]);
            roots.push(row(nodes.len() / 5)?);
        }
        let root = roots.last().copied().unwrap_or(0);
        match mode(modes[i])? {
            Some(cmp) => nodes.extend([
                row(feature_ids[i])?,
                row(true_ids[i])? + root,
                row(false_ids[i])? + root,
                values[i].to_bits(),
                u32::from(cmp.to_u8()) | if nan_true[i] { 0x100 } else { 0 },
            ]),
            None => {
                let start = row(leaves.len() / 2)?;
                while let Some(&j) = leaf_order.peek() {
                    if (leaf_trees[j], leaf_nodes[j]) != (tree_ids[i], node_ids[i]) {
                        break;
                    }
                    leaves.extend([row(leaf_targets[j])?, weights[j].to_bits()]);
                    leaf_order.next();
                }
                nodes.extend([start, row(leaves.len() / 2)?, 0, 0, 0]);
            }
        }
    }
    let max_feature = feature_ids.iter().copied().max().unwrap_or(0);
    let data = TreeEnsembleData {
        trees: rctensor1(&roots),
        nodes: tensor1(&nodes)
            .into_shape(&[nodes.len() / 5, 5])?
            .into_arc_tensor(),
        leaves: tensor1(&leaves)
            .into_shape(&[leaves.len() / 2, 2])?
            .into_arc_tensor(),
    };
    TreeEnsemble::build(data, max_feature, targets, aggregate)
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
        s.equals(&outputs[0].shape[1], self.ensemble.n_classes().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let scores = model.wire_node(
            format!("{prefix}.trees"),
            TreeScores {
                ensemble: self.ensemble.clone(),
            },
            inputs,
        )?;
        let Some(base) = &self.base_values else {
            return Ok(scores);
        };
        let base = model.add_const(format!("{prefix}.base_values"), base.clone())?;
        model.wire_node(
            format!("{prefix}.plus_base"),
            tract_onnx::tract_core::ops::math::add(),
            &[scores[0], base],
        )
    }
}
