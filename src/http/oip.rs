//! The Open Inference Protocol (KServe v2) over REST, beside the seed's API: health,
//! server and model metadata, model readiness, and `infer`, whose rows go through the same
//! read-through as `/predict` (cache, coalescing, batching, the log), one prediction per
//! row. Errors are the protocol's `{"error": "…"}` (see `handle` in `http.rs`).

pub mod tensor;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::body::RequestBody;
use crate::http::error::ApiError;
use crate::http::oip::tensor::{HEADER_LENGTH, Output, OutputData, Tensor, Values};
use crate::http::routes::{asks_no_cache, deadline_and_body, is_ready};
use crate::http::{HttpResponse, Timing};
use crate::infer::InferError;
use crate::infer::manifest::{InputSpec, ModelInfo};
use crate::infer::model::Model;
use crate::infer::registry::Served;
use crate::predict::{CacheStatus, ImageInput, Prediction, RequestOptions, TabularInput};
use crate::state::Gateway;

/// The one output every model has: a probability per class.
pub const PROBABILITIES: &str = "probabilities";
/// The input name of a tabular model.
pub const FEATURES: &str = "features";
/// The input name of an image model: encoded image files (JPEG, PNG, WebP) as `BYTES`.
pub const IMAGE: &str = "image";
/// The protocol extensions served (server metadata).
pub const EXTENSIONS: [&str; 2] = ["classification", "binary_tensor_data"];
/// The models' `platform`.
pub const PLATFORM: &str = "infergate";

/// A `/v2` path, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `/v2/health/live`.
    Live,
    /// `/v2/health/ready`.
    Ready,
    /// `/v2`: server metadata.
    Server,
    /// `/v2/models/{name}[/versions/{version}][/ready|/infer]`.
    Model {
        name: &'a str,
        version: Option<&'a str>,
        action: Action,
    },
}

/// What a model path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Metadata,
    Ready,
    Infer,
}

/// The endpoint `path` names, if it is one of the protocol's.
pub fn endpoint(path: &str) -> Option<Endpoint<'_>> {
    let rest = path.strip_prefix("/v2")?;
    match rest {
        "" | "/" => return Some(Endpoint::Server),
        "/health/live" => return Some(Endpoint::Live),
        "/health/ready" => return Some(Endpoint::Ready),
        _ => {}
    }
    let mut parts = rest.strip_prefix("/models/")?.split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let mut next = parts.next();
    let mut version = None;
    if next == Some("versions") {
        version = Some(parts.next().filter(|v| !v.is_empty())?);
        next = parts.next();
    }
    let action = match next {
        None => Action::Metadata,
        Some("ready") => Action::Ready,
        Some("infer") => Action::Infer,
        Some(_) => return None,
    };
    parts.next().is_none().then_some(Endpoint::Model {
        name,
        version,
        action,
    })
}

fn json(status: StatusCode, body: &Value) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn ready_status(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The model `name` (at `version`, when one is named; else its newest), for metadata.
pub(crate) fn find(
    gw: &Gateway,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<dyn Model>, ApiError> {
    Ok(gw.infer.catalog().find(name, version)?)
}

/// The version of `name` an inference goes to: `version`, or as the model's traffic
/// split says, else its newest. Every row of one request goes to it.
pub(crate) fn route(
    gw: &Gateway,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<dyn Model>, ApiError> {
    Ok(gw.infer.catalog().route(name, version)?)
}

/// `GET /v2/health/live` and `/v2/health/ready`, `GET /v2`, a model's metadata and
/// readiness.
pub fn metadata(gw: &Gateway, path: &str) -> Result<HttpResponse, ApiError> {
    let Some(endpoint) = endpoint(path) else {
        return Err(ApiError::NotFound(path.chars().take(200).collect()));
    };
    Ok(match endpoint {
        Endpoint::Live => json(StatusCode::OK, &json!({"live": true})),
        Endpoint::Ready => {
            let ready = is_ready(gw);
            json(ready_status(ready), &json!({"ready": ready}))
        }
        Endpoint::Server => json(
            StatusCode::OK,
            &json!({
                "name": "infergate",
                "version": env!("CARGO_PKG_VERSION"),
                "extensions": EXTENSIONS,
            }),
        ),
        Endpoint::Model {
            name,
            version,
            action,
        } => {
            let catalog = gw.infer.catalog();
            let served = catalog.get(name);
            match (action, served) {
                // A model that serves nothing (it failed to load, or was unloaded) still
                // has metadata: its state and why.
                (Action::Metadata | Action::Infer, Some(served))
                    if version.is_none() && !served.is_available() =>
                {
                    json(StatusCode::OK, &unserved_metadata(served))
                }
                (Action::Ready, _) => {
                    // Unknown names and versions are a 404, as for the metadata; only a
                    // known model (or version) that serves nothing is `ready: false`.
                    let serves = match catalog.find(name, version) {
                        Err(
                            e @ (InferError::UnknownModel { .. }
                            | InferError::UnknownVersion { .. }),
                        ) => return Err(e.into()),
                        found => found.is_ok(),
                    };
                    let ready = serves && is_ready(gw);
                    json(
                        ready_status(ready),
                        &json!({"name": name, "version": version, "ready": ready}),
                    )
                }
                (Action::Metadata | Action::Infer, _) => {
                    let model = find(gw, name, version)?;
                    let mut meta = model_metadata(model.info());
                    if let (Some(served), None) = (served, version) {
                        meta["versions"] = served
                            .versions
                            .iter()
                            .map(|m| Value::from(m.info().version.as_str()))
                            .collect();
                        if let Some(problem) = &served.problem {
                            meta["state"] = problem.state().into();
                            meta["reason"] = problem.reason().into();
                        }
                    }
                    json(StatusCode::OK, &meta)
                }
            }
        }
    })
}

/// The metadata of a model that serves nothing: no versions, no tensors, and why.
fn unserved_metadata(served: &Served) -> Value {
    json!({
        "name": served.name,
        "versions": [],
        "platform": PLATFORM,
        "inputs": [],
        "outputs": [],
        "state": served.state(),
        "reason": served.unserved_reason(),
    })
}

/// One tensor a model's metadata names: name, datatype, shape (-1: any size).
pub(crate) struct TensorSpec {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// The model's input (features or encoded images) and its output.
pub(crate) fn tensor_specs(info: &ModelInfo) -> (TensorSpec, TensorSpec) {
    let width = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let input = match &info.input {
        InputSpec::Features { names } => TensorSpec {
            name: FEATURES,
            datatype: "FP32",
            shape: vec![-1, width(names.len())],
        },
        InputSpec::Image(_) => TensorSpec {
            name: IMAGE,
            datatype: "BYTES",
            shape: vec![-1],
        },
    };
    let output = TensorSpec {
        name: PROBABILITIES,
        datatype: "FP32",
        shape: vec![-1, width(info.labels.len())],
    };
    (input, output)
}

/// `$metadata_model_response`.
fn model_metadata(info: &ModelInfo) -> Value {
    let spec = |t: TensorSpec| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape});
    let (input, output) = tensor_specs(info);
    json!({
        "name": info.name,
        "versions": [info.version],
        "platform": PLATFORM,
        "inputs": [spec(input)],
        "outputs": [spec(output)],
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::InvalidInput {
        code: "invalid_tensor",
        message: message.into(),
    }
}

/// The predictor's inputs, one per row of the request's tensor.
pub(crate) enum Rows {
    Features(Vec<Vec<f32>>),
    Images(Vec<Bytes>),
}

/// Checks the request's one input against the model and splits it into rows: a tabular
/// model takes `[N, F]` (or `[F]`) numbers, an image model `[N]` (or `[N, 1]`) encoded
/// images.
pub(crate) fn rows(info: &ModelInfo, tensors: Vec<Tensor>) -> Result<Rows, ApiError> {
    let expected = match info.input {
        InputSpec::Features { .. } => FEATURES,
        InputSpec::Image(_) => IMAGE,
    };
    let mut tensors = tensors.into_iter();
    let (Some(tensor), None) = (tensors.next(), tensors.next()) else {
        return Err(bad(format!(
            "model {:?} takes one input, {expected:?}",
            info.name
        )));
    };
    if tensor.name != expected {
        return Err(bad(format!(
            "model {:?} has no input {:?}; its input is {expected:?}",
            info.name, tensor.name
        )));
    }
    match (&info.input, tensor.values) {
        (InputSpec::Features { .. }, Values::Numbers(values)) => {
            let width = info.row_len();
            let n = match tensor.shape.as_slice() {
                [f] if *f == width => 1,
                [n, f] if *f == width => *n,
                _ => {
                    return Err(ApiError::InvalidInput {
                        code: "wrong_feature_count",
                        message: format!(
                            "input {FEATURES:?} must have shape [N, {width}] (model {:?} takes \
                             {width} features a row), not {:?}",
                            info.name, tensor.shape
                        ),
                    });
                }
            };
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(ApiError::InvalidInput {
                    code: "non_finite_feature",
                    message: format!("element {i} of {FEATURES:?} is not a finite number"),
                });
            }
            if n == 0 {
                return Err(ApiError::InvalidInput {
                    code: "empty_features",
                    message: format!("input {FEATURES:?} has no rows"),
                });
            }
            Ok(Rows::Features(
                values.chunks_exact(width).map(<[f32]>::to_vec).collect(),
            ))
        }
        (InputSpec::Image(_), Values::Bytes(images)) => match tensor.shape.as_slice() {
            [n] | [n, 1] if *n > 0 => Ok(Rows::Images(images)),
            _ => Err(bad(format!(
                "input {IMAGE:?} must have shape [N] (N > 0 encoded images), not {:?}",
                tensor.shape
            ))),
        },
        (InputSpec::Features { .. }, Values::Bytes(_)) => Err(ApiError::WrongInputKind(format!(
            "model {:?} takes numbers (FP32 and the other numeric datatypes), not BYTES",
            info.name
        ))),
        (InputSpec::Image(_), Values::Numbers(_)) => Err(ApiError::WrongInputKind(format!(
            "model {:?} takes encoded images as BYTES (JPEG, PNG, WebP files), not numbers",
            info.name
        ))),
    }
}

/// What the request asks of the output: top `classification` classes or every
/// probability, as JSON or binary.
pub(crate) struct Wanted {
    /// The classification extension's k.
    pub classification: Option<usize>,
    /// Whether the output goes as binary data (REST).
    pub binary: bool,
}

fn wanted(body: &tensor::InferBody) -> Result<Wanted, ApiError> {
    let default_binary = body.binary_by_default();
    let Some(outputs) = &body.request.outputs else {
        return Ok(Wanted {
            classification: None,
            binary: default_binary,
        });
    };
    let mut outputs = outputs.iter();
    let (Some(output), None) = (outputs.next(), outputs.next()) else {
        return Err(bad(format!(
            "the models have one output, {PROBABILITIES:?}"
        )));
    };
    if output.name != PROBABILITIES {
        return Err(bad(format!(
            "no output {:?}; the output is {PROBABILITIES:?}",
            output.name
        )));
    }
    let param = |name: &str| output.parameters.as_ref().and_then(|p| p.get(name));
    let classification = match param("classification") {
        None => None,
        Some(k) => Some(
            k.as_u64()
                .and_then(|k| usize::try_from(k).ok())
                .filter(|&k| k > 0)
                .ok_or_else(|| bad("parameters.classification must be a whole number above 0"))?,
        ),
    };
    Ok(Wanted {
        classification,
        binary: param("binary_data")
            .and_then(Value::as_bool)
            .unwrap_or(default_binary),
    })
}

/// `POST /v2/models/{m}[/versions/{v}]/infer`.
pub async fn infer(
    gw: &Gateway,
    req: Request<RequestBody>,
    meta: RequestOptions,
    timing: &mut Timing,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = req.into_parts();
    let Some(Endpoint::Model { name, version, .. }) = endpoint(parts.uri.path()) else {
        return Err(ApiError::NotFound(
            parts.uri.path().chars().take(200).collect(),
        ));
    };
    let model = route(gw, name, version)?;
    let info = model.info();
    let (deadline, bytes) = deadline_and_body(gw, &parts, body, meta.received, timing).await?;
    let decoded_at = Instant::now();
    let header_len = match parts.headers.get(HEADER_LENGTH) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| bad(format!("{HEADER_LENGTH} must be a byte count")))?,
        ),
        None => None,
    };
    let body = tensor::parse(bytes, header_len)?;
    let wanted = wanted(&body)?;
    let rows = rows(info, body.tensors()?)?;
    timing.add("decode", decoded_at.elapsed());
    let opts = RequestOptions {
        bypass_cache: asks_no_cache(&parts.headers),
        deadline,
        ..meta
    };
    let predictions = predict_rows(gw, info, rows, &opts).await?;
    let cache = cache_status(&predictions);
    if let [one] = predictions.as_slice() {
        if !one.cache.is_cached() {
            timing.add("queue", one.queue_wait);
            timing.add("infer", one.compute);
        }
        if gw.traces.is_on() {
            timing.answered_by(&info.name, one.cache.as_str());
        }
    }
    let id = body.request.id.as_deref();
    let output = output(info, &predictions, &wanted);
    let encoded = tensor::encode(&info.name, &info.version, id, &[output]);
    let mut response = Response::new(Full::new(Bytes::from(encoded.body)));
    let headers = response.headers_mut();
    match encoded.header_len {
        Some(len) => {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(len));
        }
        None => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    headers.insert("x-cache", HeaderValue::from_static(cache));
    Ok(response)
}

/// Each row through the read-through as `/predict` sends one, concurrently; the
/// predictions in row order, or the first failure.
pub(crate) async fn predict_rows(
    gw: &Gateway,
    info: &ModelInfo,
    rows: Rows,
    opts: &RequestOptions,
) -> Result<Vec<Prediction>, ApiError> {
    let predictor = &gw.predictor;
    let model_name = || Some(info.name.clone());
    // The version routed to once for the whole request: its rows never split.
    let version = || Some(info.version.clone());
    let predictions = match rows {
        Rows::Features(rows) => {
            futures_util::future::try_join_all(rows.into_iter().map(|features| {
                let len = features.len();
                predictor.tabular(
                    TabularInput {
                        model: model_name(),
                        version: version(),
                        features,
                        len,
                    },
                    opts.clone(),
                )
            }))
            .await?
        }
        Rows::Images(images) => {
            futures_util::future::try_join_all(images.into_iter().map(|bytes| {
                predictor.image(
                    ImageInput {
                        model: model_name(),
                        version: version(),
                        bytes,
                    },
                    opts.clone(),
                )
            }))
            .await?
        }
    };
    Ok(predictions)
}

/// The rows' `X-Cache`: theirs when they agree, else `mixed`.
fn cache_status(predictions: &[Prediction]) -> &'static str {
    let mut statuses = predictions.iter().map(|p| p.cache);
    let first = statuses.next().unwrap_or(CacheStatus::Miss);
    if statuses.all(|s| s == first) {
        first.as_str()
    } else {
        "mixed"
    }
}

/// The output tensor: `[N, classes]` probabilities, or with the classification extension
/// `[N, k]` strings `"probability:class_id:label"`, best first.
pub(crate) fn output(info: &ModelInfo, predictions: &[Prediction], wanted: &Wanted) -> Output {
    let n = predictions.len();
    let classes = info.labels.len();
    let (shape, data) = match wanted.classification {
        None => {
            let mut probs = Vec::with_capacity(n * classes);
            for p in predictions {
                probs.extend_from_slice(&p.answer.probs);
            }
            (vec![n, classes], OutputData::F32(probs))
        }
        Some(k) => {
            let k = k.min(classes);
            let mut labels = Vec::with_capacity(n * k);
            for p in predictions {
                let probs = &p.answer.probs;
                for id in crate::encode::ranked(probs).into_iter().take(k) {
                    let label = info.labels.get(id).map_or("", String::as_str);
                    labels.push(format!("{:.6}:{id}:{label}", probs[id]));
                }
            }
            (vec![n, k], OutputData::Strings(labels))
        }
    };
    Output {
        name: PROBABILITIES.into(),
        shape,
        data,
        binary: wanted.binary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_endpoints() {
        assert_eq!(endpoint("/v2"), Some(Endpoint::Server));
        assert_eq!(endpoint("/v2/health/live"), Some(Endpoint::Live));
        assert_eq!(
            endpoint("/v2/models/iris-mlp/versions/1.0.0/infer"),
            Some(Endpoint::Model {
                name: "iris-mlp",
                version: Some("1.0.0"),
                action: Action::Infer
            })
        );
        assert_eq!(
            endpoint("/v2/models/iris-mlp"),
            Some(Endpoint::Model {
                name: "iris-mlp",
                version: None,
                action: Action::Metadata
            })
        );
        assert_eq!(
            endpoint("/v2/models/m/ready").map(|e| matches!(
                e,
                Endpoint::Model {
                    action: Action::Ready,
                    ..
                }
            )),
            Some(true)
        );
        for bad in [
            "/v2/models/",
            "/v2/models/m/versions/",
            "/v2/models/m/infer/more",
            "/v2/models/m/explain",
            "/v2x",
            "/v1/models/m",
        ] {
            assert_eq!(endpoint(bad), None, "{bad}");
        }
    }
}
