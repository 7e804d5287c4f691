//! The Open Inference Protocol (KServe v2) over REST, beside the seed's API: health,
//! server and model metadata, model readiness, and `infer`, whose rows go through the same
//! read-through as `/predict` (cache, coalescing, batching, the log), one prediction per
//! row. Errors are the protocol's `{"error": "…"}` (see `http::finish`).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use crate::http::answers::{
    OipLive, OipModelMetadata, OipModelReady, OipReady, OipServerMetadata, OipTensorMetadata,
};
use crate::http::body::{asks_no_cache, deadline_and_body};
use crate::http::error::{ApiError, readiness_status};
use crate::http::route::Call;
use crate::http::tensor::{self, Datatype, HEADER_LENGTH, Output, OutputData, Tensor, Values};
use crate::http::{HttpResponse, json_response};
use crate::infer::InferError;
use crate::infer::manifest::{
    InputKind, InputSpec, ModelInfo, NumericType, Task, TensorSpec, Tensors,
};
use crate::infer::model::Model;

use crate::infer::registry::Served;
use crate::predict::{CacheStatus, ImageInput, Prediction, RequestOptions, TabularInput};
use crate::readiness::Readiness;
use crate::state::Gateway;

/// A classifier's one output: a probability per class.
pub const PROBABILITIES: &str = "probabilities";
/// A regressor's one output: its value, `[N, 1]`.
pub const PREDICTION: &str = "prediction";
/// The input name of a tabular model.
pub const FEATURES: &str = "features";
/// The input name of an image model: encoded image files (JPEG, PNG, WebP) as `BYTES`.
pub const IMAGE: &str = "image";
/// The protocol extensions served (server metadata).
pub const EXTENSIONS: [&str; 2] = ["classification", "binary_tensor_data"];
/// The models' `platform`.
pub const PLATFORM: &str = "infergate";

/// The model `name` (at `version`, when one is named; else its newest), for metadata.
pub(crate) fn find(
    gw: &Gateway,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<dyn Model>, ApiError> {
    Ok(gw.serving.infer.catalog().find(name, version)?)
}

/// The version of `name` an inference goes to: `version`, or as the model's traffic
/// split says, else its newest. Every row of one request goes to it.
pub(crate) fn route(
    gw: &Gateway,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<dyn Model>, ApiError> {
    Ok(gw.serving.infer.catalog().route(name, version)?)
}

/// `GET /v2/health/live`.
pub async fn live(_: Call<'_>) -> Result<HttpResponse, ApiError> {
    Ok(json_response(StatusCode::OK, &OipLive { live: true }))
}

/// `GET /v2/health/ready`: as `GET /ready`.
pub async fn ready(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let ready = Readiness::of(call.gateway).is_ready();
    Ok(json_response(readiness_status(ready), &OipReady { ready }))
}

/// `GET /v2`: server metadata.
pub async fn server_metadata(_: Call<'_>) -> Result<HttpResponse, ApiError> {
    let meta = OipServerMetadata {
        name: PLATFORM,
        version: env!("CARGO_PKG_VERSION"),
        extensions: EXTENSIONS.to_vec(),
    };
    Ok(json_response(StatusCode::OK, &meta))
}

/// `GET /v2/models/{m}[/versions/{v}]`: the model's metadata. A model that serves nothing
/// (it failed to load, or was unloaded) still has metadata: its state and why.
pub async fn model_metadata(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let path = call.req.uri().path();
    let (name, version) = call.route.model_in(path)?;
    let catalog = call.gateway.serving.infer.catalog();
    let served = catalog.get(name);
    let meta = match served {
        Some(served) if version.is_none() && !served.is_available() => unserved_metadata(served),
        _ => {
            let model = find(call.gateway, name, version)?;
            let mut meta = model_metadata_of(model.info());
            if let (Some(served), None) = (served, version) {
                meta.versions = served
                    .versions
                    .iter()
                    .map(|m| m.info().version.to_string())
                    .collect();
                if let Some(problem) = &served.problem {
                    meta.state = Some(problem.state());
                    meta.reason = Some(problem.reason().to_owned());
                }
            }
            meta
        }
    };
    Ok(json_response(StatusCode::OK, &meta))
}

/// `GET /v2/models/{m}[/versions/{v}]/ready`. Unknown names and versions are a 404, as for
/// the metadata; only a known model (or version) that serves nothing is `ready: false`.
pub async fn model_ready(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let path = call.req.uri().path();
    let (name, version) = call.route.model_in(path)?;
    let ready =
        model_serves(call.gateway, name, version)? && Readiness::of(call.gateway).is_ready();
    let answer = OipModelReady {
        name,
        version,
        ready,
    };
    Ok(json_response(readiness_status(ready), &answer))
}

/// Whether the model (at `version`) serves: an error for a name or version the catalog
/// does not know, `false` for a known one that serves nothing.
pub(crate) fn model_serves(
    gw: &Gateway,
    name: &str,
    version: Option<&str>,
) -> Result<bool, ApiError> {
    match gw.serving.infer.catalog().find(name, version) {
        Err(e @ (InferError::UnknownModel { .. } | InferError::UnknownVersion { .. })) => {
            Err(e.into())
        }
        found => Ok(found.is_ok()),
    }
}

/// The metadata of a model that serves nothing: no versions, no tensors, and why.
fn unserved_metadata(served: &Served) -> OipModelMetadata {
    OipModelMetadata {
        name: served.name.clone(),
        versions: Vec::new(),
        platform: PLATFORM,
        inputs: Vec::new(),
        outputs: Vec::new(),
        state: Some(served.state()),
        reason: served.unserved_reason().map(str::to_owned),
        device: None,
        precision: None,
    }
}

/// The model's inputs (features, encoded images, or a tensor model's own) and outputs.
pub(crate) fn tensor_specs(info: &ModelInfo) -> (Vec<OipTensorMetadata>, Vec<OipTensorMetadata>) {
    let width = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let input = match &info.input {
        InputSpec::Features { names } => OipTensorMetadata {
            name: input_name(info).to_owned(),
            datatype: input_datatype(info).unwrap_or(Datatype::F32),
            shape: vec![-1, width(names.len())],
        },
        InputSpec::Image(_) => OipTensorMetadata {
            name: IMAGE.to_owned(),
            datatype: Datatype::Bytes,
            shape: vec![-1],
        },
        InputSpec::Tensors(tensors) => {
            let meta = |t: &TensorSpec, datatype| OipTensorMetadata {
                name: t.name.clone(),
                datatype,
                shape: std::iter::once(-1)
                    .chain(t.dims.iter().map(|&d| width(d)))
                    .collect(),
            };
            let inputs = tensors.inputs.iter();
            let outputs = tensors.outputs.iter();
            return (
                inputs.map(|t| meta(t, datatype_of(t.elem))).collect(),
                // Every output is answered as FP32.
                outputs.map(|t| meta(t, Datatype::F32)).collect(),
            );
        }
    };
    let output = OipTensorMetadata {
        name: output_name(info).to_owned(),
        datatype: Datatype::F32,
        shape: vec![-1, width(info.labels.len())],
    };
    (vec![input], vec![output])
}

/// The name of the model's one output: its own where its configuration declares it (a
/// Triton repository's), else `probabilities` or, for a regressor, `prediction`.
pub(crate) fn output_name(info: &ModelInfo) -> &str {
    match (&info.own_names, info.task) {
        (Some(own), _) => &own.output,
        (None, Task::Classification) => PROBABILITIES,
        (None, Task::Regression) => PREDICTION,
    }
}

/// The names of the model's outputs: its one, or a tensor model's own.
fn output_names(info: &ModelInfo) -> Vec<&str> {
    match &info.input {
        InputSpec::Tensors(t) => t.outputs.iter().map(|o| o.name.as_str()).collect(),
        _ => vec![output_name(info)],
    }
}

/// The name of a tabular or image model's one input: its own where declared, else
/// `features` or `image`.
fn input_name(info: &ModelInfo) -> &str {
    match (&info.own_names, &info.input) {
        (Some(own), InputSpec::Features { .. }) => &own.input,
        (_, InputSpec::Features { .. } | InputSpec::Tensors(_)) => FEATURES,
        (_, InputSpec::Image(_)) => IMAGE,
    }
}

/// The datatype a tabular model's input must be sent as, where its configuration declares
/// one (else any numeric datatype).
fn input_datatype(info: &ModelInfo) -> Option<Datatype> {
    Some(datatype_of(info.own_names.as_ref()?.input_type))
}

/// The protocol's datatype of a numeric type.
fn datatype_of(numeric: NumericType) -> Datatype {
    match numeric {
        NumericType::F32 => Datatype::F32,
        NumericType::F64 => Datatype::F64,
        NumericType::I32 => Datatype::I32,
        NumericType::I64 => Datatype::I64,
    }
}

/// `$metadata_model_response`.
fn model_metadata_of(info: &ModelInfo) -> OipModelMetadata {
    let (inputs, outputs) = tensor_specs(info);
    OipModelMetadata {
        name: info.name.to_string(),
        versions: vec![info.version.to_string()],
        platform: PLATFORM,
        inputs,
        outputs,
        state: None,
        reason: None,
        device: Some(info.compute.device_name()),
        precision: Some(info.compute.precision.name()),
    }
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
    /// A tensor model's rows: each every input's row, in the model's order.
    Tensors(Vec<Vec<f32>>),
}

/// Checks the request's one input against the model and splits it into rows: a tabular
/// model takes `[N, F]` (or `[F]`) numbers, an image model `[N]` (or `[N, 1]`) encoded
/// images.
pub(crate) fn rows(info: &ModelInfo, tensors: Vec<Tensor>) -> Result<Rows, ApiError> {
    if let InputSpec::Tensors(spec) = &info.input {
        return tensor_rows(info, spec, tensors).map(Rows::Tensors);
    }
    let expected = input_name(info);
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
    // A model whose configuration declares its datatype takes that one only, as Triton does.
    if let Some(declared) = input_datatype(info).filter(|&d| d != tensor.datatype) {
        return Err(wrong_datatype(info, expected, declared, tensor.datatype));
    }
    match (&info.input, tensor.values) {
        (InputSpec::Features { .. }, Values::Numbers(values)) => {
            feature_rows(info, &tensor.shape, &values).map(Rows::Features)
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
        (InputSpec::Tensors(_), _) => Err(bad("a tensor model's rows are its tensors'")),
        (InputSpec::Image(_), Values::Numbers(_)) => Err(ApiError::WrongInputKind(format!(
            "model {:?} takes encoded images as BYTES (JPEG, PNG, WebP files), not numbers",
            info.name
        ))),
    }
}

/// A tensor model's rows from its inputs, each named once, of its datatype and of shape
/// `[N, ..its dims]`, N the same for all: row i is every input's row i, in the model's
/// order.
fn tensor_rows(
    info: &ModelInfo,
    spec: &Tensors,
    mut tensors: Vec<Tensor>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    let names: Vec<&str> = spec.inputs.iter().map(|t| t.name.as_str()).collect();
    if let Some(extra) = tensors.iter().find(|t| !names.contains(&t.name.as_str())) {
        return Err(bad(format!(
            "model {:?} has no input {:?}; its inputs are {names:?}",
            info.name, extra.name
        )));
    }
    let mut parts = Vec::with_capacity(spec.inputs.len());
    let mut n = None;
    for input in &spec.inputs {
        let at = tensors
            .iter()
            .position(|t| t.name == input.name)
            .ok_or_else(|| bad(format!("input {:?} is missing", input.name)))?;
        let tensor = tensors.swap_remove(at);
        if tensors.iter().any(|t| t.name == input.name) {
            return Err(bad(format!("input {:?} is given twice", input.name)));
        }
        let declared = datatype_of(input.elem);
        if tensor.datatype != declared {
            return Err(wrong_datatype(info, &input.name, declared, tensor.datatype));
        }
        let Values::Numbers(values) = tensor.values else {
            return Err(bad(format!("input {:?} holds numbers", input.name)));
        };
        let rows = match tensor.shape.split_first() {
            Some((&rows, dims)) if dims == input.dims.as_slice() && rows > 0 => rows,
            _ => {
                return Err(bad(format!(
                    "input {:?} must have shape [N, {}] (N > 0), not {:?}",
                    input.name,
                    input
                        .dims
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    tensor.shape
                )));
            }
        };
        if *n.get_or_insert(rows) != rows {
            return Err(bad(format!(
                "the inputs hold different numbers of rows ({} and {rows})",
                n.unwrap_or_default()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(ApiError::InvalidInput {
                code: "non_finite_feature",
                message: format!("element {i} of {:?} is not a finite number", input.name),
            });
        }
        parts.push((input.width(), values));
    }
    let n = n.unwrap_or_default();
    Ok((0..n)
        .map(|row| {
            parts
                .iter()
                .flat_map(|(width, values)| &values[row * width..(row + 1) * width])
                .copied()
                .collect()
        })
        .collect())
}

/// The refusal of an input `sent` as another datatype than the one the model takes.
fn wrong_datatype(info: &ModelInfo, input: &str, takes: Datatype, sent: Datatype) -> ApiError {
    ApiError::InvalidInput {
        code: "wrong_datatype",
        message: format!(
            "input {input:?} of model {:?} is {}, not {}",
            info.name,
            takes.as_str(),
            sent.as_str()
        ),
    }
}

/// A tabular model's rows: `[N, F]` (or `[F]`) finite numbers, F its feature count; NaN
/// (a missing value) too, for a model that takes missing values.
fn feature_rows(
    info: &ModelInfo,
    shape: &[usize],
    values: &[f32],
) -> Result<Vec<Vec<f32>>, ApiError> {
    let width = info.row_len();
    let n = match shape {
        [f] if *f == width => 1,
        [n, f] if *f == width => *n,
        _ => {
            return Err(ApiError::InvalidInput {
                code: "wrong_feature_count",
                message: format!(
                    "input {FEATURES:?} must have shape [N, {width}] (model {:?} takes \
                     {width} features a row), not {:?}",
                    info.name, shape
                ),
            });
        }
    };
    let usable = |v: &f32| v.is_finite() || info.takes_missing && v.is_nan();
    if let Some(i) = values.iter().position(|v| !usable(v)) {
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
    Ok(values.chunks_exact(width).map(<[f32]>::to_vec).collect())
}

/// The outputs a request asks for, with the classification extension's top k and whether
/// they go as binary data (REST).
pub(crate) struct Wanted {
    /// The outputs named, in the request's order; none: every output the model has.
    pub names: Vec<String>,
    /// The classification extension's k (one output).
    pub classification: Option<usize>,
    /// Whether the outputs go as binary data (REST: the first output's `binary_data`, else
    /// the request's `binary_data_output`).
    pub binary: bool,
}

impl Wanted {
    /// Refuses what the model cannot answer: an output it does not have, one asked twice,
    /// or the classification extension from a regressor or a tensor model.
    pub(crate) fn check(&self, info: &ModelInfo) -> Result<(), ApiError> {
        let outputs = output_names(info);
        for (i, name) in self.names.iter().enumerate() {
            if !outputs.contains(&name.as_str()) {
                return Err(bad(format!(
                    "no output {name:?}; the outputs are {outputs:?}"
                )));
            }
            if self.names[..i].contains(name) {
                return Err(bad(format!("output {name:?} is asked for twice")));
            }
        }
        if self.classification.is_some()
            && (info.task == Task::Regression || info.kind() == InputKind::Tensors)
        {
            return Err(bad(format!(
                "{} answers values: the classification extension needs a classifier",
                info.name
            )));
        }
        Ok(())
    }

    /// The wanted outputs: the request's names, else every output's, else the one; the
    /// classification extension takes one output.
    pub(crate) fn of(
        names: Vec<String>,
        classifications: Vec<Option<usize>>,
        binary: bool,
    ) -> Result<Self, ApiError> {
        let asked: Vec<usize> = classifications.into_iter().flatten().collect();
        let classification = match (asked.as_slice(), names.len()) {
            ([], _) => None,
            ([k], 1) => Some(*k),
            _ => return Err(bad("the classification extension takes one output")),
        };
        Ok(Self {
            names,
            classification,
            binary,
        })
    }
}

fn wanted(body: &tensor::InferBody) -> Result<Wanted, ApiError> {
    let default_binary = body.binary_by_default();
    let outputs = body.request.outputs.as_deref().unwrap_or_default();
    let param = |o: &tensor::RequestOutput, name: &str| {
        o.parameters.as_ref().and_then(|p| p.get(name)).cloned()
    };
    let classifications = outputs
        .iter()
        .map(|o| match param(o, "classification") {
            None => Ok(None),
            Some(k) => k
                .as_u64()
                .and_then(|k| usize::try_from(k).ok())
                .filter(|&k| k > 0)
                .map(Some)
                .ok_or_else(|| bad("parameters.classification must be a whole number above 0")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let binary = outputs
        .first()
        .and_then(|o| param(o, "binary_data"))
        .and_then(|v| v.as_bool())
        .unwrap_or(default_binary);
    Wanted::of(
        outputs.iter().map(|o| o.name.clone()).collect(),
        classifications,
        binary,
    )
}

/// `POST /v2/models/{m}[/versions/{v}]/infer`.
pub async fn infer(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let Call {
        gateway: gw,
        route: row,
        req,
        meta,
        timing,
    } = call;
    let (parts, body) = req.into_parts();
    let (name, version) = row.model_in(parts.uri.path())?;
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
    wanted.check(info)?;
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
        if gw.serving.traces.is_on() {
            timing.answered_by(&info.name, one.cache.as_str());
        }
    }
    let id = body.request.id.as_deref();
    let outputs = outputs(info, &predictions, &wanted);
    let encoded = tensor::encode(&info.name, &info.version, id, &outputs);
    let mut response = encoded_response(encoded, cache);
    let load = predictions.iter().filter_map(|p| p.load).max();
    crate::http::routes::mark_cold(&mut response, timing, load);
    Ok(response)
}

/// An encoded inference answer: JSON, or JSON and binary data after it.
fn encoded_response(encoded: tensor::Encoded, cache: &'static str) -> HttpResponse {
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
    response
}

/// Each row through the read-through as `/predict` sends one, concurrently; the
/// predictions in row order, or the first failure.
pub(crate) async fn predict_rows(
    gw: &Gateway,
    info: &ModelInfo,
    rows: Rows,
    opts: &RequestOptions,
) -> Result<Vec<Prediction>, ApiError> {
    let predictor = &gw.serving.predictor;
    let model_name = || Some(info.name.to_string());
    // The version routed to once for the whole request: its rows never split.
    let version = || Some(info.version.to_string());
    let predictions = match rows {
        Rows::Features(rows) => {
            futures_util::future::try_join_all(rows.into_iter().map(|features| {
                let len = features.len();
                predictor.tabular(
                    TabularInput {
                        model: model_name(),
                        version: version(),
                        missing: features.iter().position(|v| v.is_nan()),
                        features,
                        len,
                    },
                    opts.clone(),
                )
            }))
            .await?
        }
        Rows::Tensors(rows) => {
            futures_util::future::try_join_all(rows.into_iter().map(|features| {
                let len = features.len();
                predictor.tensors(
                    TabularInput {
                        model: model_name(),
                        version: version(),
                        missing: None,
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

/// The output tensors: a tensor model's asked for (every one by default), each
/// `[N, ..its dims]`; else the one, `[N, classes]` probabilities (a regressor's: `[N, 1]`
/// values), or with the classification extension `[N, k]` strings
/// `"probability:class_id:label"`, best first.
pub(crate) fn outputs(
    info: &ModelInfo,
    predictions: &[Prediction],
    wanted: &Wanted,
) -> Vec<Output> {
    let InputSpec::Tensors(spec) = &info.input else {
        return vec![output(info, predictions, wanted)];
    };
    let n = predictions.len();
    let mut offset = 0;
    let mut out = Vec::new();
    for t in &spec.outputs {
        let (start, width) = (offset, t.width());
        offset += width;
        if !wanted.names.is_empty() && !wanted.names.contains(&t.name) {
            continue;
        }
        let mut data = Vec::with_capacity(n * width);
        for p in predictions {
            data.extend_from_slice(p.answer.probs.get(start..start + width).unwrap_or_default());
        }
        out.push(Output {
            name: t.name.clone(),
            shape: std::iter::once(n).chain(t.dims.iter().copied()).collect(),
            data: OutputData::F32(data),
            binary: wanted.binary,
        });
    }
    // In the order asked.
    out.sort_by_key(|o| wanted.names.iter().position(|n| *n == o.name));
    out
}

/// The output tensor: `[N, classes]` probabilities (a regressor's: `[N, 1]` values), or
/// with the classification extension `[N, k]` strings `"probability:class_id:label"`,
/// best first.
fn output(info: &ModelInfo, predictions: &[Prediction], wanted: &Wanted) -> Output {
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
        name: output_name(info).into(),
        shape,
        data,
        binary: wanted.binary,
    }
}
