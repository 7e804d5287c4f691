//! Triton's model repository API (admin scope): `POST /v2/repository/index` lists every
//! model version and its state; `POST /v2/repository/models/{m}/load` loads (or reloads)
//! a repository model from its directory, `/unload` stops serving it (requests in flight
//! finish). Errors are the Open Inference Protocol's `{"error": "…"}`.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use crate::http::body::RequestBody;
use crate::http::error::ApiError;
use crate::http::routes::deadline_and_body;
use crate::http::{HttpResponse, Timing};
use crate::infer::registry::Catalog;
use crate::predict::RequestOptions;
use crate::repository::RepositoryError;
use crate::state::Gateway;

/// Where the repository API's paths start.
pub const PREFIX: &str = "/v2/repository";

/// A repository path, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `/v2/repository/index`.
    Index,
    /// `/v2/repository/models/{name}/load`.
    Load(&'a str),
    /// `/v2/repository/models/{name}/unload`.
    Unload(&'a str),
}

/// The endpoint `path` names, if it is one of the repository API's.
pub fn endpoint(path: &str) -> Option<Endpoint<'_>> {
    let rest = path.strip_prefix(PREFIX)?;
    if rest == "/index" {
        return Some(Endpoint::Index);
    }
    let (name, action) = rest.strip_prefix("/models/")?.split_once('/')?;
    if name.is_empty() {
        return None;
    }
    match action {
        "load" => Some(Endpoint::Load(name)),
        "unload" => Some(Endpoint::Unload(name)),
        _ => None,
    }
}

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
    /// `READY`, `UNAVAILABLE` (failed to load) or `UNLOADED`.
    #[schema(value_type = crate::http::openapi::schemas::ModelState)]
    pub state: &'static str,
    /// Why it is not ready; empty when it is.
    pub reason: String,
}

/// Every model version the catalog knows: each served version `READY`, each that failed
/// `UNAVAILABLE` with why, and a model serving nothing once, with its state.
pub fn index_of(catalog: &Catalog) -> Vec<IndexEntry> {
    let mut entries = Vec::new();
    for served in catalog.models() {
        for model in &served.versions {
            entries.push(IndexEntry {
                name: served.name.clone(),
                version: model.info().version.clone(),
                state: "READY",
                reason: String::new(),
            });
        }
        for failed in &served.failed {
            if served.version(&failed.version).is_none() {
                entries.push(IndexEntry {
                    name: served.name.clone(),
                    version: failed.version.clone(),
                    state: "UNAVAILABLE",
                    reason: failed.reason.clone(),
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
            });
        }
    }
    entries
}

fn json(body: Vec<u8>) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Serves one repository API request.
pub async fn handle(
    gw: &Gateway,
    req: Request<RequestBody>,
    meta: RequestOptions,
    timing: &mut Timing,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let Some(endpoint) = endpoint(&path) else {
        return Err(ApiError::NotFound(path.chars().take(200).collect()));
    };
    let (_, bytes) = deadline_and_body(gw, &parts, body, meta.received, timing).await?;
    match endpoint {
        Endpoint::Index => {
            let asked: IndexRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
                IndexRequest::default()
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::MalformedJson(format!(
                        "the index request is {{\"ready\": true|false}} or empty: {e}"
                    ))
                })?
            };
            let mut entries = index_of(&gw.infer.catalog());
            if asked.ready {
                entries.retain(|e| e.state == "READY");
            }
            Ok(json(serde_json::to_vec(&entries).unwrap_or_default()))
        }
        Endpoint::Load(name) | Endpoint::Unload(name) => {
            let load = matches!(endpoint, Endpoint::Load(_));
            let result = match &gw.repository {
                Some(repository) if load => repository.load(name).await,
                Some(repository) => repository.unload(name).await,
                None => Err(match gw.infer.catalog().get(name) {
                    Some(_) => RepositoryError::Configured(name.to_owned()),
                    None => RepositoryError::UnknownModel(name.to_owned()),
                }),
            };
            result.map_err(|e| match e {
                RepositoryError::UnknownModel(_) => ApiError::UnknownModel(format!(
                    "{e}{}",
                    if gw.repository.is_none() {
                        " (no repository.path is configured)"
                    } else {
                        ""
                    }
                )),
                RepositoryError::Stopped => ApiError::ShuttingDown,
                _ => ApiError::ModelLoadFailed(e.to_string()),
            })?;
            Ok(json(b"{}".to_vec()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_parse() {
        assert_eq!(endpoint("/v2/repository/index"), Some(Endpoint::Index));
        assert_eq!(
            endpoint("/v2/repository/models/iris/load"),
            Some(Endpoint::Load("iris"))
        );
        assert_eq!(
            endpoint("/v2/repository/models/iris/unload"),
            Some(Endpoint::Unload("iris"))
        );
        for bad in [
            "/v2/repository",
            "/v2/repository/index/x",
            "/v2/repository/models//load",
            "/v2/repository/models/iris",
            "/v2/repository/models/iris/delete",
            "/v2/repository/models/a/b/load",
        ] {
            assert_eq!(endpoint(bad), None, "{bad}");
        }
    }
}
