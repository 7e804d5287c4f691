//! Encoding answers. The part of an answer that depends only on the model and the input is
//! encoded once, cached as bytes, and spliced with the per-request members
//! (`prediction_id`, `cached`) for every request it answers.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::cache::CachedAnswer;
use crate::infer::manifest::{ModelInfo, Tensors};

/// Classes listed in `top_k` at most.
pub const TOP_K: usize = 5;

/// `{"name","version"}` of the model that answered.
#[derive(Debug, Serialize, ToSchema)]
struct ModelRef<'a> {
    /// Its name.
    name: &'a str,
    /// Its version.
    version: &'a str,
}

/// One class and its probability.
#[derive(Debug, Serialize, ToSchema)]
struct ClassScore<'a> {
    /// The class's index in the model's output.
    class_id: usize,
    /// Its label.
    label: &'a str,
    /// Its probability.
    confidence: f32,
}

/// The cacheable members of a tabular answer, in wire order.
#[derive(Debug, Serialize, ToSchema)]
struct TabularMembers<'a> {
    /// The model that answered.
    model: ModelRef<'a>,
    /// Label of the most probable class.
    prediction: &'a str,
    /// Its probability.
    confidence: f32,
    /// Its index in the model's output.
    class_id: usize,
    /// The most probable classes, best first.
    top_k: Vec<ClassScore<'a>>,
}

/// The cacheable members of a regressor's answer, in wire order.
#[derive(Debug, Serialize, ToSchema)]
struct RegressionMembers<'a> {
    /// The model that answered.
    model: ModelRef<'a>,
    /// The model's value for the row.
    prediction: f32,
}

/// The cacheable members of a tensor model's answer: what its log row keeps (the Open
/// Inference Protocol answers from the output row).
#[derive(Debug, Serialize)]
struct TensorMembers<'a> {
    /// The model that answered.
    model: ModelRef<'a>,
    /// Each output's row, flattened, by name.
    outputs: serde_json::Map<String, serde_json::Value>,
}

/// The cacheable members of an image answer, in wire order (the replaced stack's fields,
/// plus `model` and each class's `label`).
#[derive(Debug, Serialize, ToSchema)]
struct ImageMembers<'a> {
    /// The model that answered.
    model: ModelRef<'a>,
    /// MD5 of the uploaded bytes, lowercase hex, as the replaced stack reported it.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    image_hash: &'a str,
    /// The most probable classes, best first.
    predictions: Vec<ClassScore<'a>>,
}

/// `POST /predict`'s answer: `prediction_id`, a tabular classifier's, a regressor's or an
/// image model's members, `cached`.
// The OpenAPI document's schema of what [`answer`] splices: the bytes are never serialized
// from this, and a test holds the two together.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PredictAnswer<'a> {
    /// From a tabular classifier (JSON `features`).
    Tabular(TabularAnswer<'a>),
    /// From a regressor (JSON `features`; ONNX models).
    Regression(RegressionAnswer<'a>),
    /// From an image model (an upload or a raw `image/*` body).
    Image(ImageAnswer<'a>),
}

/// `POST /predict`'s answer from a tabular model.
#[derive(Serialize, ToSchema)]
pub struct TabularAnswer<'a> {
    /// A UUIDv7 the gateway made; the prediction log's row has it too.
    #[schema(value_type = String, format = "uuid")]
    prediction_id: Uuid,
    #[serde(flatten)]
    members: TabularMembers<'a>,
    /// Answered from a cache tier (`X-Cache` says which), not computed for this request.
    cached: bool,
}

/// `POST /predict`'s answer from a regressor: its value.
#[derive(Serialize, ToSchema)]
pub struct RegressionAnswer<'a> {
    /// A UUIDv7 the gateway made; the prediction log's row has it too.
    #[schema(value_type = String, format = "uuid")]
    prediction_id: Uuid,
    #[serde(flatten)]
    members: RegressionMembers<'a>,
    /// Answered from a cache tier (`X-Cache` says which), not computed for this request.
    cached: bool,
}

/// `POST /predict`'s answer from an image model: the top classes.
#[derive(Serialize, ToSchema)]
pub struct ImageAnswer<'a> {
    /// A UUIDv7 the gateway made; the prediction log's row has it too.
    #[schema(value_type = String, format = "uuid")]
    prediction_id: Uuid,
    #[serde(flatten)]
    members: ImageMembers<'a>,
    /// Answered from a cache tier (`X-Cache` says which), not computed for this request.
    cached: bool,
}

/// Class ids sorted by probability, best first (ties keep the lower id first).
pub fn ranked(probs: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..probs.len()).collect();
    ids.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    ids
}

/// Encodes a tabular classifier's probabilities as the cacheable part of the answer.
pub fn tabular(info: &ModelInfo, probs: &[f32]) -> CachedAnswer {
    let ranked = ranked(probs);
    let best = ranked.first().copied().unwrap_or_default();
    let confidence = probs.get(best).copied().unwrap_or_default();
    let members = TabularMembers {
        model: model_ref(info),
        prediction: label(info, best),
        confidence,
        class_id: best,
        top_k: top(info, probs, &ranked),
    };
    cached(Some(confidence), &members, probs)
}

/// Encodes a regressor's value (the one number of `values`) as the cacheable part of the
/// answer.
pub fn regression(info: &ModelInfo, values: &[f32]) -> CachedAnswer {
    let members = RegressionMembers {
        model: model_ref(info),
        prediction: values.first().copied().unwrap_or_default(),
    };
    cached(None, &members, values)
}

/// Encodes a tensor model's output row (every output's row, in order) as the cacheable
/// part of the answer: the model and the outputs by name, flattened (what the log keeps;
/// the Open Inference Protocol answers from the row itself).
pub fn tensors(info: &ModelInfo, tensors: &Tensors, row: &[f32]) -> CachedAnswer {
    let mut outputs = serde_json::Map::new();
    let mut rest = row;
    for output in &tensors.outputs {
        let (values, after) = rest.split_at(output.width().min(rest.len()));
        outputs.insert(output.name.clone(), serde_json::json!(values));
        rest = after;
    }
    let members = TensorMembers {
        model: model_ref(info),
        outputs,
    };
    cached(None, &members, row)
}

/// Encodes an image classifier's probabilities for the upload whose MD5 is `image_hash`.
pub fn image(info: &ModelInfo, image_hash: &str, probs: &[f32]) -> CachedAnswer {
    let ranked = ranked(probs);
    let confidence = ranked.first().map_or(0.0, |&best| probs[best]);
    let members = ImageMembers {
        model: model_ref(info),
        image_hash,
        predictions: top(info, probs, &ranked),
    };
    cached(Some(confidence), &members, probs)
}

fn model_ref(info: &ModelInfo) -> ModelRef<'_> {
    ModelRef {
        name: &info.name,
        version: &info.version,
    }
}

fn label(info: &ModelInfo, id: usize) -> &str {
    info.labels.get(id).map_or("", String::as_str)
}

fn top<'a>(info: &'a ModelInfo, probs: &[f32], ranked: &[usize]) -> Vec<ClassScore<'a>> {
    ranked
        .iter()
        .take(TOP_K)
        .map(|&id| ClassScore {
            class_id: id,
            label: label(info, id),
            confidence: probs[id],
        })
        .collect()
}

/// The members of `object` without its braces, with its confidence and the
/// probabilities.
fn cached(confidence: Option<f32>, object: &impl Serialize, probs: &[f32]) -> CachedAnswer {
    // Serializing plain structs of strings and numbers cannot fail; an empty object is
    // the harmless fallback if it ever did.
    let object = serde_json::to_vec(object).unwrap_or_else(|_| b"{}".to_vec());
    let inner = object
        .get(1..object.len().saturating_sub(1))
        .unwrap_or_default();
    CachedAnswer {
        confidence,
        body: Bytes::copy_from_slice(inner),
        probs: Arc::from(probs),
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
    use crate::infer::manifest::{Compute, Task};
    use crate::infer::model::Model as _;

    #[test]
    fn spliced_answer_is_the_documented_json() {
        let model = crate::infer::demo::load().unwrap();
        let cached = tabular(model.info(), &[0.1, 0.7, 0.2]);
        assert_eq!(cached.confidence, Some(0.7));
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

    #[test]
    fn an_image_answer_has_the_seeds_fields_and_five_classes() {
        let info = ModelInfo {
            name: "net".into(),
            version: "2".into(),
            labels: (0..8).map(|i| format!("class {i}")).collect(),
            task: Task::Classification,
            input: crate::infer::manifest::InputSpec::Features { names: Vec::new() },
            takes_missing: false,
            own_names: None,
            max_batch: 1,
            revision: 0,
            compute: Compute::CPU,
        };
        let probs = [0.01, 0.3, 0.05, 0.4, 0.02, 0.1, 0.07, 0.05];
        let cached = image(&info, "900150983cd24fb0d6963f7d28e17f72", &probs);
        assert_eq!(cached.confidence, Some(0.4));
        let body = answer(Uuid::now_v7(), &cached.body, false);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["image_hash"], "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(v["model"]["version"], "2");
        let ids: Vec<u64> = v["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["class_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [3, 1, 5, 6, 2], "best first, ties by lower id");
        assert_eq!(v["predictions"][0]["label"], "class 3");
        assert_eq!(v["cached"], false);
    }

    #[test]
    fn the_documented_answer_types_serialize_as_the_splice() {
        let id = Uuid::now_v7();
        let model = || ModelRef {
            name: "net",
            version: "2",
        };
        let top = || {
            vec![ClassScore {
                class_id: 1,
                label: "b",
                confidence: 0.75,
            }]
        };
        let tabular = || TabularMembers {
            model: model(),
            prediction: "b",
            confidence: 0.75,
            class_id: 1,
            top_k: top(),
        };
        let spliced = answer(id, &cached(Some(0.75), &tabular(), &[0.75]).body, true);
        let typed = PredictAnswer::Tabular(TabularAnswer {
            prediction_id: id,
            members: tabular(),
            cached: true,
        });
        assert_eq!(spliced, serde_json::to_vec(&typed).unwrap());
        let image = || ImageMembers {
            model: model(),
            image_hash: "900150983cd24fb0d6963f7d28e17f72",
            predictions: top(),
        };
        let spliced = answer(id, &cached(Some(0.75), &image(), &[0.75]).body, false);
        let typed = PredictAnswer::Image(ImageAnswer {
            prediction_id: id,
            members: image(),
            cached: false,
        });
        assert_eq!(spliced, serde_json::to_vec(&typed).unwrap());
        let regression = || RegressionMembers {
            model: model(),
            prediction: 151.5,
        };
        let spliced = answer(id, &cached(None, &regression(), &[151.5]).body, false);
        let typed = PredictAnswer::Regression(RegressionAnswer {
            prediction_id: id,
            members: regression(),
            cached: false,
        });
        assert_eq!(spliced, serde_json::to_vec(&typed).unwrap());
    }

    #[test]
    fn a_regression_answer_is_its_number_and_the_model() {
        let info = ModelInfo {
            name: "diabetes".into(),
            version: "1".into(),
            labels: vec!["prediction".into()],
            task: Task::Regression,
            input: crate::infer::manifest::InputSpec::Features { names: Vec::new() },
            takes_missing: false,
            own_names: None,
            max_batch: 1,
            revision: 0,
            compute: Compute::CPU,
        };
        let cached = regression(&info, &[151.25]);
        assert_eq!(cached.confidence, None);
        let v: serde_json::Value =
            serde_json::from_slice(&answer(Uuid::now_v7(), &cached.body, false)).unwrap();
        assert_eq!(v["prediction"], 151.25);
        assert_eq!(v["model"]["name"], "diabetes");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["cached", "model", "prediction", "prediction_id"],
            "(sorted)"
        );
    }
}
