//! Tree ensembles (`TreeEnsembleClassifier`, `TreeEnsembleRegressor`) checked, and one
//! comparison rewritten, before they are parsed.
//!
//! Most run on our forest (`ops/forest.rs`), whose walk counts on what is checked here to
//! end; the binary classifiers left to tract are walked with unchecked indexing and an
//! unbounded loop, trusting the file: there a child id out of range or a leaf's class id
//! past the class count would read or write outside its tables, a cycle would spin a
//! compute thread forever, and node ids that do not number a tree's nodes 0..n would send
//! branches to the wrong rows. So each tree is checked here to be what the spec describes,
//! and a file that is not is refused with the node named. tract also reads `BRANCH_GTE` as
//! a leaf; `x >= v` is rewritten as `x < v` with the two children swapped (and the side
//! missing values take, swapped too), which is the same comparison for every `x`, NaN
//! included.

use std::collections::HashMap;

use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto};

use super::graph::{ML_DOMAIN, attribute};

/// ONNX's attribute type number for a list of ints.
const ATTR_INTS: i32 = 7;

/// Checks every tree ensemble node of `graph` and of the graphs its nodes hold (an `If`'s
/// branches, a `Loop`'s body), rewriting `BRANCH_GTE` in place.
pub fn check(graph: &mut GraphProto) -> Result<(), String> {
    for node in &mut graph.node {
        for attr in &mut node.attribute {
            if let Some(inner) = attr.g.as_mut() {
                check(inner)?;
            }
            attr.graphs.iter_mut().try_for_each(check)?;
        }
        let leaf = match node.op_type.as_str() {
            _ if node.domain != ML_DOMAIN => continue,
            "TreeEnsembleClassifier" => "class",
            "TreeEnsembleRegressor" => "target",
            _ => continue,
        };
        check_node(node, leaf)
            .map_err(|why| format!("node {:?} ({}): {why}", node.name, node.op_type))?;
        rewrite_gte(node);
    }
    Ok(())
}

/// The ints of attribute `name`; empty when absent.
fn ints<'a>(node: &'a NodeProto, name: &str) -> &'a [i64] {
    attribute(node, name).map_or(&[], |a| a.ints.as_slice())
}

/// How many scores a row gets: the class count, or `n_targets`.
fn outputs(node: &NodeProto, leaf: &str) -> Result<usize, String> {
    let count = if leaf == "class" {
        let ints = attribute(node, "classlabels_int64s").map_or(0, |a| a.ints.len());
        let strings = attribute(node, "classlabels_strings").map_or(0, |a| a.strings.len());
        ints.max(strings)
    } else {
        let n = attribute(node, "n_targets").map_or(0, |a| a.i);
        usize::try_from(n).map_err(|_| format!("n_targets is {n}"))?
    };
    if count == 0 {
        return Err(format!(
            "no {}",
            if leaf == "class" {
                "class labels"
            } else {
                "targets"
            }
        ));
    }
    Ok(count)
}

fn check_node(node: &NodeProto, leaf: &str) -> Result<(), String> {
    let outputs = outputs(node, leaf)?;
    let tree_ids = ints(node, "nodes_treeids");
    let node_ids = ints(node, "nodes_nodeids");
    let true_ids = ints(node, "nodes_truenodeids");
    let false_ids = ints(node, "nodes_falsenodeids");
    let feature_ids = ints(node, "nodes_featureids");
    let modes: Vec<&[u8]> = attribute(node, "nodes_modes")
        .map(|a| a.strings.iter().map(Vec::as_slice).collect())
        .unwrap_or_default();
    let n = tree_ids.len();
    if n == 0 {
        return Err("no tree nodes".into());
    }
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_featureids", feature_ids.len()),
        ("nodes_modes", modes.len()),
    ] {
        if len != n {
            return Err(format!("{name} has {len} entries, nodes_treeids {n}"));
        }
    }
    // Each tree's nodes, by id: (is a leaf, true child, false child).
    let mut trees: HashMap<i64, HashMap<i64, (bool, i64, i64)>> = HashMap::new();
    for i in 0..n {
        let is_leaf = match modes[i] {
            b"LEAF" => true,
            b"BRANCH_LEQ" | b"BRANCH_LT" | b"BRANCH_GTE" | b"BRANCH_GT" | b"BRANCH_EQ"
            | b"BRANCH_NEQ" => false,
            other => {
                return Err(format!(
                    "unknown node mode {:?}",
                    String::from_utf8_lossy(other)
                ));
            }
        };
        if feature_ids[i] < 0 {
            return Err(format!("a negative feature id ({})", feature_ids[i]));
        }
        let tree = trees.entry(tree_ids[i]).or_default();
        if tree
            .insert(node_ids[i], (is_leaf, true_ids[i], false_ids[i]))
            .is_some()
        {
            return Err(format!(
                "tree {} lists node {} twice",
                tree_ids[i], node_ids[i]
            ));
        }
    }
    for (tree_id, tree) in &trees {
        check_tree(*tree_id, tree)?;
    }
    let leaf_trees = ints(node, &format!("{leaf}_treeids"));
    let leaf_nodes = ints(node, &format!("{leaf}_nodeids"));
    let leaf_ids = ints(node, &format!("{leaf}_ids"));
    let weights = attribute(node, &format!("{leaf}_weights")).map_or(0, |a| a.floats.len());
    let m = leaf_ids.len();
    if m == 0 {
        return Err(format!("no {leaf}_ids"));
    }
    if leaf_trees.len() != m || leaf_nodes.len() != m || weights != m {
        return Err(format!(
            "{leaf}_ids, {leaf}_treeids, {leaf}_nodeids and {leaf}_weights differ in length"
        ));
    }
    for j in 0..m {
        if usize::try_from(leaf_ids[j])
            .ok()
            .is_none_or(|id| id >= outputs)
        {
            return Err(format!("{leaf} id {} of {outputs}", leaf_ids[j]));
        }
        let found = trees
            .get(&leaf_trees[j])
            .and_then(|t| t.get(&leaf_nodes[j]));
        if !matches!(found, Some((true, _, _))) {
            return Err(format!(
                "a weight for node {} of tree {}, which is not a leaf",
                leaf_nodes[j], leaf_trees[j]
            ));
        }
    }
    Ok(())
}

/// A tree's node ids are 0..n, its branches' children are among them, and no path from the
/// root (node 0) comes back to a node it passed.
fn check_tree(tree_id: i64, tree: &HashMap<i64, (bool, i64, i64)>) -> Result<(), String> {
    let n = tree.len() as i64;
    if let Some(id) = tree.keys().find(|&&id| id < 0 || id >= n) {
        return Err(format!("tree {tree_id} has {n} nodes but a node id {id}"));
    }
    for (id, &(is_leaf, t, f)) in tree {
        let inside = |child: i64| (0..n).contains(&child);
        if !(is_leaf || inside(t) && inside(f)) {
            return Err(format!(
                "tree {tree_id}: node {id} branches to a node it does not have"
            ));
        }
    }
    // Depth-first from the root: a node met again while still on the path is a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        Not,
        OnPath,
        Done,
    }
    let mut seen = vec![Seen::Not; tree.len()];
    let mut stack = vec![(0i64, false)];
    while let Some((id, leaving)) = stack.pop() {
        let Ok(i) = usize::try_from(id) else { continue };
        if leaving {
            seen[i] = Seen::Done;
            continue;
        }
        match seen[i] {
            Seen::OnPath => return Err(format!("tree {tree_id} has a cycle through node {id}")),
            Seen::Done => continue,
            Seen::Not => {}
        }
        seen[i] = Seen::OnPath;
        stack.push((id, true));
        if let Some(&(false, t, f)) = tree.get(&id) {
            for child in [t, f] {
                if seen[child as usize] == Seen::OnPath {
                    return Err(format!("tree {tree_id} has a cycle through node {child}"));
                }
                stack.push((child, false));
            }
        }
    }
    Ok(())
}

/// `BRANCH_GTE` nodes as `BRANCH_LT`, children and missing-value side swapped.
fn rewrite_gte(node: &mut NodeProto) {
    let gte: Vec<usize> = attribute(node, "nodes_modes")
        .map(|a| {
            a.strings
                .iter()
                .enumerate()
                .filter(|(_, m)| m.as_slice() == b"BRANCH_GTE")
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    if gte.is_empty() {
        return;
    }
    let n = ints(node, "nodes_treeids").len();
    if attribute(node, "nodes_missing_value_tracks_true").is_none() {
        node.attribute.push(AttributeProto {
            name: "nodes_missing_value_tracks_true".into(),
            r#type: ATTR_INTS,
            ints: vec![0; n],
            ..AttributeProto::default()
        });
    }
    let mut true_ids = ints(node, "nodes_truenodeids").to_vec();
    let mut false_ids = ints(node, "nodes_falsenodeids").to_vec();
    let mut tracks = ints(node, "nodes_missing_value_tracks_true").to_vec();
    tracks.resize(n, 0);
    for &i in &gte {
        std::mem::swap(&mut true_ids[i], &mut false_ids[i]);
        tracks[i] = i64::from(tracks[i] == 0);
    }
    for attr in &mut node.attribute {
        match attr.name.as_str() {
            "nodes_truenodeids" => attr.ints.clone_from(&true_ids),
            "nodes_falsenodeids" => attr.ints.clone_from(&false_ids),
            "nodes_missing_value_tracks_true" => attr.ints.clone_from(&tracks),
            "nodes_modes" => {
                for &i in &gte {
                    attr.strings[i] = b"BRANCH_LT".to_vec();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: ATTR_INTS,
            ints: ints.to_vec(),
            ..AttributeProto::default()
        }
    }

    /// One tree: node 0 compares feature 0 with 1.0 (`mode`), leaves 1 (true) and 2.
    fn stump(mode: &str, true_id: i64, class_ids: &[i64]) -> NodeProto {
        let strings = |name: &str, values: &[&str]| AttributeProto {
            name: name.into(),
            r#type: 8,
            strings: values.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..AttributeProto::default()
        };
        let floats = |name: &str, values: &[f32]| AttributeProto {
            name: name.into(),
            r#type: 6,
            floats: values.to_vec(),
            ..AttributeProto::default()
        };
        NodeProto {
            name: "forest".into(),
            op_type: "TreeEnsembleClassifier".into(),
            domain: ML_DOMAIN.into(),
            attribute: vec![
                ints_attr("classlabels_int64s", &[0, 1]),
                ints_attr("nodes_treeids", &[0, 0, 0]),
                ints_attr("nodes_nodeids", &[0, 1, 2]),
                ints_attr("nodes_featureids", &[0, 0, 0]),
                strings("nodes_modes", &[mode, "LEAF", "LEAF"]),
                ints_attr("nodes_truenodeids", &[true_id, 0, 0]),
                ints_attr("nodes_falsenodeids", &[2, 0, 0]),
                floats("nodes_values", &[1.0, 0.0, 0.0]),
                ints_attr("class_treeids", &[0, 0]),
                ints_attr("class_nodeids", &[1, 2]),
                ints_attr("class_ids", class_ids),
                floats("class_weights", &[1.0, 1.0]),
            ],
            ..NodeProto::default()
        }
    }

    fn checked(node: NodeProto) -> Result<NodeProto, String> {
        let mut graph = GraphProto {
            node: vec![node],
            ..GraphProto::default()
        };
        check(&mut graph)?;
        Ok(graph.node.remove(0))
    }

    #[test]
    fn a_well_formed_tree_passes_unchanged() {
        let node = stump("BRANCH_LEQ", 1, &[0, 1]);
        assert_eq!(checked(node.clone()).unwrap(), node);
    }

    #[test]
    fn ids_tract_would_use_unchecked_are_refused() {
        let err = checked(stump("BRANCH_LEQ", 7, &[0, 1])).unwrap_err();
        assert!(err.contains("branches to a node it does not have"), "{err}");
        let err = checked(stump("BRANCH_LEQ", 1, &[0, 2])).unwrap_err();
        assert!(err.contains("class id 2 of 2"), "{err}");
        let err = checked(stump("BRANCH_LEQ", 0, &[0, 1])).unwrap_err();
        assert!(err.contains("cycle"), "{err}");
        let err = checked(stump("BRANCH_SOMETIMES", 1, &[0, 1])).unwrap_err();
        assert!(err.contains("unknown node mode"), "{err}");
    }

    #[test]
    fn branch_gte_becomes_branch_lt_with_the_children_swapped() {
        let node = checked(stump("BRANCH_GTE", 1, &[0, 1])).unwrap();
        assert_eq!(
            attribute(&node, "nodes_modes").unwrap().strings[0],
            b"BRANCH_LT"
        );
        assert_eq!(ints(&node, "nodes_truenodeids")[0], 2);
        assert_eq!(ints(&node, "nodes_falsenodeids")[0], 1);
        // NaN went to the false child (no tracks attribute); it still does.
        assert_eq!(ints(&node, "nodes_missing_value_tracks_true"), [1, 0, 0]);
    }
}
