//! Route handlers. Thin: decode, call `predict`, encode.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use crate::deadline::Deadline;
use crate::http::body::{
    PredictContent, RequestBody, decode_tabular, predict_content, read_limited,
};
use crate::http::error::{ApiError, readiness_status};
use crate::http::multipart;
use crate::http::{HttpResponse, Timing};
use crate::predict::{ImageInput, RequestOptions};
use crate::prediction_log::DbStatus;
use crate::state::Dependency;
use crate::state::Gateway;
use crate::stats::Source;

fn json_response(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `GET /health`: liveness, while the process serves.
pub fn health(gw: &Gateway) -> HttpResponse {
    let catalog = gw.infer.catalog();
    let default = catalog.defaults().next();
    json_response(
        StatusCode::OK,
        &json!({
            "status": "healthy",
            "model": default.map(|m| m.info().name.as_str()),
            "version": default.map(|m| m.info().version.as_str()),
            "uptime_s": gw.stats.snapshot().uptime_s,
        }),
    )
}

/// `GET /ready`: 200 once every model answered its warm-up, while no drain has begun and
/// no dependency listed in `ready.require` is down. `listening` says whether the public
/// listener is open; it does not decide readiness (a standby instance is ready to be
/// activated).
pub fn ready(gw: &Gateway) -> HttpResponse {
    let r = readiness(gw);
    json_response(
        readiness_status(r.ready),
        &json!({
            "status": if r.ready { "ready" } else { "not_ready" },
            "draining": r.draining,
            "listening": gw.is_listening(),
            "io_backend": gw.io_backend,
            "checks": {
                "model": if r.warm { "ok" } else { "warming_up" },
                // Per model: a model that failed to load is reported here and in its own
                // /v2/models/{m}/ready, and never makes the others' replica unready.
                "models": model_checks(gw),
                // Redis or Postgres down degrades (L1 only; rows spooled), it does not
                // make a replica unready unless ready.require says so: every replica
                // shares them.
                "redis": r.redis,
                "database": r.database,
            },
            "required_down": r.missing,
        }),
    )
}

/// Each model's state: `ok`, `unavailable` (it failed to load) or `unloaded`.
fn model_checks(gw: &Gateway) -> serde_json::Map<String, serde_json::Value> {
    gw.infer
        .catalog()
        .models()
        .iter()
        .map(|m| {
            let state = match m.state() {
                "READY" => "ok",
                "UNLOADED" => "unloaded",
                _ => "unavailable",
            };
            (m.name.clone(), state.into())
        })
        .collect()
}

/// Whether `/ready` would answer 200 (the OIP health and model readiness ask the same).
pub fn is_ready(gw: &Gateway) -> bool {
    readiness(gw).ready
}

struct Readiness {
    ready: bool,
    warm: bool,
    draining: bool,
    redis: &'static str,
    database: &'static str,
    missing: Vec<&'static str>,
}

fn readiness(gw: &Gateway) -> Readiness {
    let warm = gw.models_warm();
    let draining = gw.shutdown.is_draining();
    let redis = gw.predictor.redis_status();
    let database = database_status(gw);
    let missing: Vec<&str> = gw
        .ready_require
        .iter()
        .filter_map(|d| match d {
            Dependency::Redis => (redis != "ok").then_some("redis"),
            Dependency::Database => (database != "ok").then_some("database"),
        })
        .collect();
    Readiness {
        ready: warm && !draining && missing.is_empty(),
        warm,
        draining,
        redis,
        database,
        missing,
    }
}

/// `POST /predict`.
pub async fn predict(
    gw: &Gateway,
    req: Request<RequestBody>,
    meta: RequestOptions,
    timing: &mut Timing,
) -> Result<HttpResponse, ApiError> {
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
            gw.predictor.tabular(input, opts).await?
        }
        PredictContent::Multipart { boundary } => {
            let upload = multipart::upload(bytes, &boundary).await?;
            timing.add("decode", decoded_at.elapsed());
            let input = ImageInput {
                model: upload.model.or_else(query_model),
                version: query_version(),
                bytes: upload.file,
            };
            gw.predictor.image(input, opts).await?
        }
        PredictContent::Image => {
            let input = ImageInput {
                model: query_model(),
                version: query_version(),
                bytes,
            };
            gw.predictor.image(input, opts).await?
        }
    };
    if !prediction.decode.is_zero() {
        timing.add("image_decode", prediction.decode);
        timing.add("preprocess", prediction.preprocess);
    }
    if !prediction.cache.is_cached() {
        timing.add("queue", prediction.queue_wait);
        timing.add("infer", prediction.compute);
    }
    let info = prediction.model.info();
    let span = tracing::Span::current();
    span.record("model", info.name.as_str());
    span.record("cache", prediction.cache.as_str());
    if gw.traces.is_on() {
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
    Ok(response)
}

/// A prediction request's deadline (from its headers, counted from `received`) and its
/// body, read within the body limits; the read's time goes into `timing`.
pub(crate) async fn deadline_and_body(
    gw: &Gateway,
    parts: &http::request::Parts,
    body: RequestBody,
    received: Instant,
    timing: &mut Timing,
) -> Result<(Deadline, Bytes), ApiError> {
    let deadline = gw
        .limits
        .deadline
        .for_request(&parts.headers, received)
        .map_err(|e| ApiError::InvalidTimeout(e.to_string()))?;
    let started = Instant::now();
    let bytes = read_limited(body, &parts.headers, &gw.limits.body).await?;
    timing.add("read", started.elapsed());
    Ok((deadline, bytes))
}

/// Whether the request says `Cache-Control: no-cache` (or `no-store`, or `max-age=0`).
pub(crate) fn asks_no_cache(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "no-cache" || d == "no-store" || d == "max-age=0")
}

/// The `model` query parameter (`?model=name`), if any.
/// The value of `name` in a query string (`?model=iris&version=2`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn database_status(gw: &Gateway) -> &'static str {
    match gw.predictor.log().map(|log| log.status()) {
        None => "disabled",
        Some(DbStatus::Ok) => "ok",
        Some(DbStatus::Down) => "down",
    }
}

/// `GET /stats`. With a prediction log, the prediction totals come from the table (a
/// reading at most `prediction_log.stats_cache_ms` old); without one, or while Postgres
/// has never answered, from this process's memory. `predictions_source` says which.
pub async fn stats(gw: &Gateway) -> HttpResponse {
    let s = gw.stats.snapshot();
    let (total, last_hour, average, source, log) = match gw.predictor.log() {
        None => (
            s.total_predictions,
            s.predictions_last_hour,
            s.average_confidence,
            "memory",
            json!({"status": "disabled"}),
        ),
        Some(log) => {
            let c = log.counters();
            let sink = json!({
                "status": database_status(gw),
                "rows_written": c.written,
                "rows_spooled": c.spooled,
                "rows_replayed": c.replayed,
                "rows_dropped": c.dropped,
                "queue_depth": c.queued,
                "spool_bytes": c.spool_bytes,
                "spool_torn_segments": c.torn_segments,
            });
            match log.db_counts().await {
                Some((db, fresh)) => (
                    db.total_predictions.max(0) as u64,
                    db.predictions_last_hour.max(0) as u64,
                    db.average_confidence,
                    if fresh { "database" } else { "database_stale" },
                    sink,
                ),
                None => (
                    s.total_predictions,
                    s.predictions_last_hour,
                    s.average_confidence,
                    "memory",
                    sink,
                ),
            }
        }
    };
    let catalog = gw.infer.catalog();
    let models: Vec<_> = catalog
        .models()
        .iter()
        .map(|m| {
            let versions: Vec<&str> = m
                .versions
                .iter()
                .map(|v| v.info().version.as_str())
                .collect();
            json!({
                "name": m.name,
                "version": versions.first(),
                "versions": versions,
                "state": m.state(),
                "reason": m.problem.as_ref().map(|p| p.reason()),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "total_predictions": total,
            "predictions_last_hour": last_hour,
            "average_confidence": average,
            "predictions_source": source,
            "served_by_this_process": s.total_predictions,
            "prediction_log": log,
            "cache": gw.cache_mode,
            "cache_hits": s.cache_hits(),
            "cache_misses": s.cache_misses(),
            "cache_hit_rate": s.cache_hit_rate(),
            "cache_hits_l1": s.from_source(Source::L1),
            "cache_hits_l2": s.from_source(Source::L2),
            "coalesced": s.from_source(Source::Coalesced),
            "cache_bypassed": s.from_source(Source::Bypass),
            "batches": {
                "count": s.batches,
                "rows": s.batched_rows,
                "mean_size": if s.batches == 0 { 0.0 } else { s.batched_rows as f64 / s.batches as f64 },
                "max_size": s.largest_batch,
            },
            "inference_queue_depth": gw.infer.queue_depth(),
            "connections_active": gw.shutdown.open_connections(),
            "listening": gw.is_listening(),
            "io_backend": gw.io_backend,
            "api_keys": gw.auth.keys().map(|k| k.len()),
            "rate_limit": {
                "on": gw.rate_limits.is_on(),
                "tracked_clients": gw.rate_limits.tracked(),
            },
            "admission": gw.predictor.admission().snapshot(),
            "models": models,
            "uptime_s": s.uptime_s,
        }),
    )
}

/// `GET /metrics`: Prometheus text format.
pub fn metrics(gw: &Gateway) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(gw.metrics.render())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
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
