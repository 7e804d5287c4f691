//! Triton's model repository API (admin scope): `POST /v2/repository/index` lists every
//! model version and its state; `POST /v2/repository/models/{m}/load` loads (or reloads)
//! a repository model from its directory, `/unload` stops serving it (requests in flight
//! finish). Errors are the Open Inference Protocol's `{"error": "…"}`.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::http::answers::RepositoryModelDone;
use crate::http::body::deadline_and_body;
use crate::http::error::ApiError;
use crate::http::route::Call;
use crate::http::{HttpResponse, json_response};
use crate::infer::model::on_demand::State;
use crate::infer::registry::Catalog;
use crate::repository::RepositoryError;
use crate::state::Gateway;

/// `POST /v2/repository/index`'s optional body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct IndexRequest {
    /// Only versions that serve.
    #[serde(default)]
    pub ready: bool,
}

/// One model version in the index (Triton's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IndexEntry {
    /// The model.
    pub name: String,
    /// The version; empty for a model with no version to name.
    pub version: String,
    /// `READY`, `UNAVAILABLE` (failed to load) or `UNLOADED`; a version loaded on demand
    /// is `UNLOADED` until a request needs it, then `LOADING`, then `READY`.
    #[schema(value_type = crate::http::answers::ModelState)]
    pub state: &'static str,
    /// Why it is not ready; empty when it is.
    pub reason: String,
    /// On demand: what it took at its last load, bytes (before its first load, its files'
    /// size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// On demand: milliseconds since a request last asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
}

/// Every model version the catalog knows: each served version `READY`, each that failed
/// `UNAVAILABLE` with why, and a model serving nothing once, with its state.
pub fn index_of(catalog: &Catalog) -> Vec<IndexEntry> {
    let mut entries = Vec::new();
    for served in catalog.models() {
        for model in &served.versions {
            let mut entry = IndexEntry {
                name: served.name.clone(),
                version: model.info().version.to_string(),
                state: "READY",
                reason: String::new(),
                bytes: None,
                idle_ms: None,
            };
            if let Some(handle) = model.on_demand() {
                let slot = handle.slot();
                let state = slot.state();
                entry.state = state.name();
                if let State::Failed { reason, .. } | State::NoRoom { reason, .. } = state {
                    entry.reason = reason;
                }
                entry.bytes = Some(slot.bytes());
                entry.idle_ms = Some(slot.last_used().elapsed().as_millis() as u64);
            }
            entries.push(entry);
        }
        for failed in &served.failed {
            if served.version(&failed.version).is_none() {
                entries.push(IndexEntry {
                    name: served.name.clone(),
                    version: failed.version.clone(),
                    state: "UNAVAILABLE",
                    reason: failed.reason.clone(),
                    bytes: None,
                    idle_ms: None,
                });
            }
        }
        // A model serving nothing with no failed version to name: once, with why.
        if let (Some(reason), true) = (served.unserved_reason(), served.failed.is_empty()) {
            entries.push(IndexEntry {
                name: served.name.clone(),
                version: String::new(),
                state: served.state(),
                reason: reason.to_owned(),
                bytes: None,
                idle_ms: None,
            });
        }
    }
    entries
}

/// `POST /v2/repository/index`.
pub async fn index(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let (gw, bytes) = read_body(call).await?;
    let asked: IndexRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        IndexRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::MalformedJson(format!(
                "the index request is {{\"ready\": true|false}} or empty: {e}"
            ))
        })?
    };
    let mut entries = index_of(&gw.serving.infer.catalog());
    if asked.ready {
        entries.retain(|e| e.state == "READY");
    }
    Ok(json_response(StatusCode::OK, &entries))
}

/// `POST /v2/repository/models/{m}/load`.
pub async fn load(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    load_or_unload(call, true).await
}

/// `POST /v2/repository/models/{m}/unload`.
pub async fn unload(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    load_or_unload(call, false).await
}

/// The body, read within the limits though nothing in it is used (but the index's).
async fn read_body(call: Call<'_>) -> Result<(&Arc<Gateway>, Bytes), ApiError> {
    let (parts, body) = call.req.into_parts();
    let (_, bytes) =
        deadline_and_body(call.gateway, &parts, body, call.meta.received, call.timing).await?;
    Ok((call.gateway, bytes))
}

async fn load_or_unload(call: Call<'_>, load: bool) -> Result<HttpResponse, ApiError> {
    let row = call.route;
    let path = call.req.uri().path().to_owned();
    let (name, _) = row.model_in(&path)?;
    let (gw, _) = read_body(call).await?;
    let result = match &gw.lifecycle.repository {
        Some(repository) if load => repository.load(name).await,
        Some(repository) => repository.unload(name).await,
        None => Err(match gw.serving.infer.catalog().get(name) {
            Some(_) => RepositoryError::Configured(name.to_owned()),
            None => RepositoryError::UnknownModel(name.to_owned()),
        }),
    };
    result.map_err(|e| match e {
        RepositoryError::UnknownModel(_) => ApiError::UnknownModel(format!(
            "{e}{}",
            if gw.lifecycle.repository.is_none() {
                " (no repository.path is configured)"
            } else {
                ""
            }
        )),
        RepositoryError::Stopped => ApiError::ShuttingDown,
        _ => ApiError::ModelLoadFailed(e.to_string()),
    })?;
    Ok(json_response(StatusCode::OK, &RepositoryModelDone {}))
}
