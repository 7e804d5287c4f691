//! Encoding answers. The part of an answer that depends only on the model and the input is
//! encoded once, cached as bytes, and spliced with the per-request members
//! (`prediction_id`, `cached`) for every request it answers.

use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use crate::cache::CachedAnswer;
use crate::infer::manifest::Manifest;

/// Classes listed in `top_k` at most.
pub const TOP_K: usize = 5;

/// `{"name","version"}` of the model that answered.
#[derive(Debug, Serialize)]
struct ModelRef<'a> {
    name: &'a str,
    version: &'a str,
}

/// One class and its probability.
#[derive(Debug, Serialize)]
struct ClassScore<'a> {
    class_id: usize,
    label: &'a str,
    confidence: f32,
}

/// The cacheable members of a tabular answer, in wire order.
#[derive(Debug, Serialize)]
struct TabularMembers<'a> {
    model: ModelRef<'a>,
    /// Label of the most probable class.
    prediction: &'a str,
    /// Its probability.
    confidence: f32,
    class_id: usize,
    /// The most probable classes, best first.
    top_k: Vec<ClassScore<'a>>,
}

/// Class ids sorted by probability, best first (ties keep the lower id first).
pub fn ranked(probs: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..probs.len()).collect();
    ids.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    ids
}

/// Encodes a classifier's probabilities as the cacheable part of the answer.
pub fn tabular(manifest: &Manifest, probs: &[f32]) -> CachedAnswer {
    let ranked = ranked(probs);
    let label = |id: usize| manifest.labels.get(id).map_or("", String::as_str);
    let best = ranked.first().copied().unwrap_or_default();
    let confidence = probs.get(best).copied().unwrap_or_default();
    let members = TabularMembers {
        model: ModelRef {
            name: &manifest.name,
            version: &manifest.version,
        },
        prediction: label(best),
        confidence,
        class_id: best,
        top_k: ranked
            .iter()
            .take(TOP_K)
            .map(|&id| ClassScore {
                class_id: id,
                label: label(id),
                confidence: probs[id],
            })
            .collect(),
    };
    // Serializing plain structs of strings and numbers cannot fail; an empty object is
    // the harmless fallback if it ever did.
    let object = serde_json::to_vec(&members).unwrap_or_else(|_| b"{}".to_vec());
    let inner = object
        .get(1..object.len().saturating_sub(1))
        .unwrap_or_default();
    CachedAnswer {
        confidence,
        body: Bytes::copy_from_slice(inner),
    }
}

/// The whole answer: `{"prediction_id":…,<members>,"cached":…}`.
pub fn answer(prediction_id: Uuid, members: &[u8], cached: bool) -> Bytes {
    let mut out = Vec::with_capacity(members.len() + 80);
    out.extend_from_slice(b"{\"prediction_id\":\"");
    out.extend_from_slice(
        prediction_id
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    out.extend_from_slice(b"\",");
    out.extend_from_slice(members);
    if !members.is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(if cached {
        b"\"cached\":true}"
    } else {
        b"\"cached\":false}"
    });
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_answer_is_the_documented_json() {
        let manifest: Manifest = serde_json::from_str(crate::infer::demo::MANIFEST).unwrap();
        let cached = tabular(&manifest, &[0.1, 0.7, 0.2]);
        assert_eq!(cached.confidence, 0.7);
        let id = Uuid::now_v7();
        let body = answer(id, &cached.body, true);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["prediction_id"], id.to_string());
        assert_eq!(v["model"]["name"], "iris-mlp");
        assert_eq!(v["prediction"], "versicolor");
        assert_eq!(v["class_id"], 1);
        assert_eq!(v["top_k"][1]["label"], "virginica");
        assert_eq!(v["cached"], true);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 7);
    }
}
