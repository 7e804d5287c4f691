//! The seed API's handlers. Thin: decode, call `predict`, encode.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use crate::http::answers::{Ready, Stats};
use crate::http::body::{
    PredictContent, asks_no_cache, deadline_and_body, decode_tabular, predict_content,
};
use crate::http::error::{ApiError, readiness_status};
use crate::http::route::Call;
use crate::http::{HttpResponse, Timing, json_response, multipart};
use crate::predict::{ImageInput, Prediction, RequestOptions};
use crate::readiness::{Health, Readiness};
use crate::state::Gateway;

/// `GET /health`: liveness, while the process serves.
pub async fn health(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    Ok(json_response(StatusCode::OK, &Health::of(call.gateway)))
}

/// `GET /ready`: 200 once every model answered its warm-up, while no drain has begun and
/// no dependency listed in `ready.require` is down. `listening` says whether the public
/// listener is open; it does not decide readiness (a standby instance is ready to be
/// activated).
pub async fn ready(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let readiness = Readiness::of(call.gateway);
    Ok(json_response(
        readiness_status(readiness.is_ready()),
        &Ready::new(&readiness, call.gateway),
    ))
}

/// `POST /predict`.
pub async fn predict(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let Call {
        gateway: gw,
        req,
        meta,
        timing,
        ..
    } = call;
    let (parts, body) = req.into_parts();
    let content = predict_content(&parts.headers)?;
    let (deadline, bytes) = deadline_and_body(gw, &parts, body, meta.received, timing).await?;
    let opts = RequestOptions {
        bypass_cache: asks_no_cache(&parts.headers),
        deadline,
        ..meta
    };
    let query_model = || query_param(parts.uri.query(), "model");
    let query_version = || query_param(parts.uri.query(), "version");
    let decoded_at = Instant::now();
    let prediction = match content {
        PredictContent::Json => {
            let mut input = decode_tabular(&bytes)?;
            if input.model.is_none() {
                input.model = query_model();
            }
            if input.version.is_none() {
                input.version = query_version();
            }
            timing.add("decode", decoded_at.elapsed());
            gw.serving.predictor.tabular(input, opts).await?
        }
        PredictContent::Multipart { boundary } => {
            let upload = multipart::upload(bytes, &boundary).await?;
            timing.add("decode", decoded_at.elapsed());
            let input = ImageInput {
                model: upload.model.or_else(query_model),
                version: query_version(),
                bytes: upload.file,
            };
            gw.serving.predictor.image(input, opts).await?
        }
        PredictContent::Image => {
            let input = ImageInput {
                model: query_model(),
                version: query_version(),
                bytes,
            };
            gw.serving.predictor.image(input, opts).await?
        }
    };
    Ok(predict_answer(gw, &prediction, timing))
}

/// A prediction as `/predict` answers it; its phases go into `timing`, its model and cache
/// outcome into the request's span.
fn predict_answer(gw: &Gateway, prediction: &Prediction, timing: &mut Timing) -> HttpResponse {
    if !prediction.decode.is_zero() {
        timing.add("image_decode", prediction.decode);
        timing.add("preprocess", prediction.preprocess);
    }
    if !prediction.cache.is_cached() {
        timing.add("queue", prediction.queue_wait);
        timing.add("infer", prediction.compute);
    }
    let load = prediction.load;
    let info = prediction.model.info();
    let span = tracing::Span::current();
    span.record("model", &*info.name);
    span.record("cache", prediction.cache.as_str());
    if gw.serving.traces.is_on() {
        timing.answered_by(&info.name, prediction.cache.as_str());
    }
    let body = crate::encode::answer(
        prediction.prediction_id,
        &prediction.answer.body,
        prediction.cache.is_cached(),
    );
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(
        "x-cache",
        HeaderValue::from_static(prediction.cache.as_str()),
    );
    mark_cold(&mut response, timing, load);
    response
}

/// An answer that waited for its model to load on demand says so: `X-Model-Load: cold`
/// and a `load` phase in `Server-Timing`.
pub(crate) fn mark_cold(
    response: &mut HttpResponse,
    timing: &mut Timing,
    load: Option<std::time::Duration>,
) {
    if let Some(load) = load {
        timing.add("load", load);
        response
            .headers_mut()
            .insert("x-model-load", HeaderValue::from_static("cold"));
    }
}

/// The value of `name` in a query string (`?model=iris&version=2`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// `GET /stats`.
pub async fn stats(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &Stats::of(call.gateway).await,
    ))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    crate::metrics::record_allocator();
    let mut response = Response::new(Full::new(Bytes::from(
        call.gateway.lifecycle.metrics.render(),
    )));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_query_parameter() {
        assert_eq!(
            query_param(Some("a=1&model=iris"), "model"),
            Some("iris".into())
        );
        assert_eq!(query_param(Some("modelx=1"), "model"), None);
        assert_eq!(query_param(None, "model"), None);
    }
}
