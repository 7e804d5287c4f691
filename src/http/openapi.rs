//! The OpenAPI 3.1 document of every HTTP route — the seed's API, the Open Inference
//! Protocol's REST routes, the model repository — served at `GET /openapi.json` and
//! committed as `openapi.json` (a test fails when the two differ).
//!
//! Schemas come from the wire types (`utoipa::ToSchema` on the request and answer types
//! the handlers serialize, the error bodies, the OIP tensors); [`schemas`] describes the
//! request bodies read by other means (uploads, binary data). Each route's own answers are
//! declared on a stub below; the rest comes from the route table ([`FromRouteTable`]): the
//! versioned paths of the Open Inference Protocol (from the unversioned stubs), the API
//! key a scope needs (and its 401, 403 and 429), the refusals of a request head, and which
//! error body the route answers with. `tests/it/openapi.rs` runs schemathesis against the
//! real server with this document.

pub mod schemas;

use std::sync::LazyLock;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::Full;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::auth::Scope;
use crate::http::HttpResponse;
use crate::http::ROUTES;
use crate::http::error::{ApiError, ErrorBody, OipErrorBody};
use crate::http::route::{Call, Methods, RouteDef};

/// The document as served and committed: pretty JSON, built on first use, then shared.
pub static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(render()));

/// The document, pretty-printed, ending in a newline as the committed file does.
pub fn render() -> String {
    // Serializing the document's own types cannot fail; `{}` is the harmless fallback.
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned());
    json.push('\n');
    json
}

/// `GET /openapi.json`.
pub async fn serve(_: Call<'_>) -> Result<HttpResponse, ApiError> {
    let mut response = http::Response::new(Full::new(DOCUMENT.clone()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The security scheme names.
const BEARER: &str = "bearer";
const API_KEY: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "infergate",
        description = "Edge inference gateway: the seed API (`/health`, `/ready`, `/predict`, \
            `/stats`, `/metrics`), the Open Inference Protocol (KServe v2) over REST, and \
            Triton's model repository API. With an API key file, every route but the health \
            and readiness routes and this document needs a key (`Authorization: Bearer KEY` \
            or `X-API-Key: KEY`) with the scope the operation names; without one, the keys \
            are ignored. Every answer carries `X-Request-Id`. A method a route does not \
            take is answered 405 with `Allow`."
    ),
    paths(
        paths::health,
        paths::ready,
        paths::predict,
        paths::stats,
        paths::console_status,
        paths::metrics,
        paths::openapi_json,
        paths::oip_server_metadata,
        paths::oip_server_live,
        paths::oip_server_ready,
        paths::oip_model_metadata,
        paths::oip_model_ready,
        paths::oip_model_infer,
        paths::repository_index,
        paths::repository_model_load,
        paths::repository_model_unload,
    ),
    modifiers(&FromRouteTable),
    tags(
        (name = "gateway", description = "The seed API: health, readiness, predictions, statistics, metrics."),
        (name = "oip", description = "The Open Inference Protocol (KServe v2) over REST; its errors are `{\"error\": \"…\"}`."),
        (name = "repository", description = "Triton's model repository API: list, load and unload models."),
    )
)]
struct ApiDoc;

/// Adds what the route table says: the versioned paths, and on every operation what the
/// router gives every request of its route (`http::admit`, `http::finish`), so that the
/// document follows the table, not a copy of it.
struct FromRouteTable;

impl Modify for FromRouteTable {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        add_security_schemes(doc.components.get_or_insert_with(Default::default));
        for route in ROUTES {
            let Some(versioned) = route.versioned_path() else {
                continue;
            };
            if let Some(item) = doc.paths.paths.get(route.path) {
                let item = on_one_version(item.clone(), route.path);
                doc.paths.paths.insert(versioned, item);
            }
        }
        for (path, item) in &mut doc.paths.paths {
            let Some(route) = ROUTES.iter().find(|r| r.documents(path)) else {
                continue;
            };
            for (_, op) in operations(item) {
                optional_body_is_absent_not_null(op);
                decorate(op, route);
            }
        }
    }
}

impl RouteDef {
    /// Whether `path` (as the document names it) is this route's.
    fn documents(&self, path: &str) -> bool {
        self.path == path || self.versioned_path().is_some_and(|v| v == path)
    }
}

fn add_security_schemes(components: &mut utoipa::openapi::Components) {
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key: `Authorization: Bearer KEY`."))
                .build(),
        ),
    );
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "An API key: `X-API-Key: KEY`.",
        ))),
    );
}

/// A path item's operations, by method.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("OPTIONS", &mut item.options),
        ("HEAD", &mut item.head),
        ("PATCH", &mut item.patch),
        ("TRACE", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, op)| Some((method, op.as_mut()?)))
}

/// The path item of `path`'s versioned twin (`…/{model}/versions/{version}/…`): the same
/// operations and answers, on the version the path names.
fn on_one_version(mut item: PathItem, path: &str) -> PathItem {
    for (method, op) in operations(&mut item) {
        // The id names the version after the model, as the path does.
        op.operation_id = op
            .operation_id
            .take()
            .map(|id| id.replacen("model", "model_version", 1));
        op.summary = op.summary.take().map(|s| format!("{s} (one version)"));
        op.description = Some(format!("As `{method} {path}`, on the version named."));
        let version = ParameterBuilder::new()
            .name("version")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("One of its versions."))
            .schema(Some(String::schema()))
            .example(Some("1.0.0".into()))
            .build();
        let params = op.parameters.get_or_insert_with(Vec::new);
        let after_model = params
            .iter()
            .position(|p| p.name == "model")
            .map_or(0, |i| i + 1);
        params.insert(after_model, version);
    }
    item
}

/// utoipa writes an `Option<T>` body as "`T` or `null`"; an optional body is one that may
/// be left out, and a `null` one is refused like any other body that is not a `T`.
fn optional_body_is_absent_not_null(op: &mut Operation) {
    let Some(body) = &mut op.request_body else {
        return;
    };
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        if let [RefOr::T(Schema::Object(null)), only] = one_of.items.as_slice()
            && null.schema_type == SchemaType::Type(Type::Null)
        {
            content.schema = Some(only.clone());
        }
    }
}

/// The refusals the router can answer on any route: status, description, `Retry-After`.
const HEAD_REFUSALS: [(u16, &str, bool); 2] = [
    (
        400,
        "A malformed request; on any route, a head with both `Content-Length` and \
         `Transfer-Encoding` (`ambiguous_framing`).",
        false,
    ),
    (
        431,
        "More header fields than `http.max_headers` (`too_many_headers`).",
        false,
    ),
];

/// The refusals of a route that needs a key.
const KEY_REFUSALS: [(u16, &str, bool); 3] = [
    (
        401,
        "API keys are on and the request has none, or one that is not valid \
         (`unauthorized`; `WWW-Authenticate` says which).",
        false,
    ),
    (
        403,
        "The key lacks the scope this route needs (`forbidden`); or, on an admin route \
         while no keys are configured, the client is not on the gateway's machine \
         (`protected_mode`, see `auth.protected_mode`).",
        false,
    ),
    (
        429,
        "The caller's rate limit is used up (`rate_limited`); `RateLimit` headers on \
         every limited answer.",
        true,
    ),
];

/// The refusals `handle` can answer on `route` before (or whatever) its handler does, and
/// the key its scope needs.
fn decorate(op: &mut Operation, route: &RouteDef) {
    // A refusal's body: the protocol's on its routes, ours elsewhere.
    let body = if route.protocol.oip_errors() {
        OipErrorBody::name()
    } else {
        ErrorBody::name()
    };
    let keyed: &[_] = if route.scope.is_some() {
        &KEY_REFUSALS
    } else {
        &[]
    };
    let derived = route_answers(route);
    for &(status, description, retry_after) in HEAD_REFUSALS.iter().chain(keyed).chain(&derived) {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| refusal(&body, description, retry_after).into());
    }
    if let Some(scope) = route.scope {
        needs_key(op, scope);
    }
}

/// What a route answers by its row in the table, where its stub says nothing more
/// particular: a body (every `POST`) may arrive too slowly or be too large, and a model
/// named in the path may not exist.
fn route_answers(route: &RouteDef) -> Vec<(u16, &'static str, bool)> {
    let mut answers = Vec::new();
    if route.methods == Methods::Post {
        answers.push((408, "The body arrived too slowly.", false));
        answers.push((413, "The body is too large.", false));
    }
    if route.path.contains("{model}") {
        answers.push((404, "No model (or version) by that name.", false));
    }
    answers
}

/// A refusal with the error body named `body`.
fn refusal(body: &str, description: &str, retry_after: bool) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(body)))
            .build(),
    );
    if retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(u64::schema())
                .description(Some("Seconds to wait before trying again."))
                .build(),
        );
    }
    response.build()
}

/// The operation needs a key with `scope` (when keys are on).
fn needs_key(op: &mut Operation, scope: Scope) {
    let none: [&str; 0] = [];
    op.security = Some(vec![
        SecurityRequirement::new(BEARER, none),
        SecurityRequirement::new(API_KEY, none),
    ]);
    let needs = format!(
        "Needs a key with the `{}` scope when API keys are on.",
        scope.as_str()
    );
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{needs}"),
        _ => needs,
    });
}

/// The routes, one stub per operation: documentation only, never called. Each lists the
/// answers its handler gives; [`FromRouteTable`] adds the router's.
#[allow(dead_code)]
mod paths {
    use crate::encode::PredictAnswer;
    use crate::http::answers::{
        OipLive, OipModelMetadata, OipModelReady, OipReady, OipServerMetadata, Ready,
        RepositoryModelDone, Stats,
    };
    use crate::http::error::{ErrorBody, OipErrorBody};
    use crate::http::openapi::schemas::{BinaryBody, PredictUpload, RepositoryModelRequest};
    use crate::http::pages::status::ConsoleStatus;
    use crate::http::repository::{IndexEntry, IndexRequest};
    use crate::http::tensor::{InferRequest, InferResponse};
    use crate::http::types::TabularRequest;
    use crate::readiness::Health;

    /// `{model}` in an Open Inference Protocol path.
    #[derive(utoipa::IntoParams)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)] // read by the document only
    struct OipModel {
        /// The model's name.
        #[param(example = "iris-mlp")]
        model: String,
    }

    /// `{model}` in a repository path.
    #[derive(utoipa::IntoParams)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)] // read by the document only
    struct RepositoryModel {
        /// The model's name in the repository.
        model: String,
    }

    /// Liveness
    ///
    /// 200 while the process serves, whatever its readiness.
    #[utoipa::path(
        get,
        path = "/health",
        tag = "gateway",
        responses((status = 200, description = "The process serves.", body = Health))
    )]
    fn health() {}

    /// Readiness
    ///
    /// 200 once every model answered its warm-up inference, while no drain has begun and
    /// no dependency in `ready.require` is down; 503 otherwise, with the same body.
    #[utoipa::path(
        get,
        path = "/ready",
        tag = "gateway",
        responses(
            (status = 200, description = "Ready: route traffic here.", body = Ready),
            (status = 503, description = "Not ready: warming up, draining, or a required dependency is down.", body = Ready),
        )
    )]
    fn ready() {}

    /// Predict
    ///
    /// A tabular model takes JSON `features`; an image model an upload (`multipart/form-data`,
    /// field `file`, as `curl -F file=@cat.jpg`) or the image as the body (`image/*`), and
    /// answers its top five classes. `model` (in the body, the upload's `model` field or the
    /// query) picks a model; the default model otherwise. `Cache-Control: no-cache`
    /// computes the answer afresh.
    #[utoipa::path(
        post,
        path = "/predict",
        tag = "gateway",
        params(
            ("model" = Option<String>, Query, description = "Picks a model by name (the body's `model` wins)."),
            ("version" = Option<String>, Query, description = "Picks a version of the model (the body's `version` wins); as its traffic split says, else its newest, when absent."),
            ("X-Request-Timeout" = Option<String>, Header, description = "This request's deadline (`250ms`, `2s`, `1.5s`, `100us`), cut to `admission.max_deadline_ms`; `server.request_timeout_ms` when absent."),
            ("Cache-Control" = Option<String>, Header, description = "`no-cache`, `no-store` or `max-age=0`: compute the answer afresh."),
        ),
        request_body(
            description = "Features as JSON, an upload, or an image as the body.",
            content(
                (TabularRequest = "application/json"),
                (PredictUpload = "multipart/form-data"),
                (BinaryBody = "image/jpeg"),
                (BinaryBody = "image/png"),
                (BinaryBody = "image/webp"),
            )
        ),
        responses(
            (status = 200, description = "The prediction.", body = PredictAnswer<'_>,
                headers(("X-Cache" = String, description = "`hit-l1`, `hit-l2`, `miss`, `coalesced` or `bypass`."))),
            (status = 400, description = "Malformed JSON or multipart body, or an unreadable `X-Request-Timeout`.", body = ErrorBody<'_>),
            (status = 404, description = "No model (or version) by that name.", body = ErrorBody<'_>),
            (status = 413, description = "The body, or the image's dimensions, are too large.", body = ErrorBody<'_>),
            (status = 415, description = "A content type, image format or input kind the model does not take.", body = ErrorBody<'_>),
            (status = 422, description = "Valid JSON or upload whose values cannot be used: wrong feature count, not numbers, not finite, empty, not an image.", body = ErrorBody<'_>),
            (status = 503, description = "Overloaded (`Retry-After`), the model is unavailable, or the gateway is shutting down.", body = ErrorBody<'_>,
                headers(("Retry-After" = u64, description = "Seconds to wait."))),
            (status = 504, description = "No answer within the request's deadline.", body = ErrorBody<'_>),
        )
    )]
    fn predict() {}

    /// Statistics
    ///
    /// Prediction totals (from the prediction log when there is one), cache, coalescing and
    /// batching counters, limits and models.
    #[utoipa::path(
        get,
        path = "/stats",
        tag = "gateway",
        responses((status = 200, description = "The counters.", body = Stats))
    )]
    fn stats() {}

    /// The console's numbers
    ///
    /// What the console at `/` polls: the gateway's version, uptime and readiness, the
    /// last half minute's predictions (rate, cache hit rate, latency percentiles), and each
    /// model's input, feature names, versions and traffic split. 404 with `ui.enabled =
    /// false`.
    #[utoipa::path(
        get,
        path = "/console/status",
        tag = "gateway",
        responses(
            (status = 200, description = "The console's numbers.", body = ConsoleStatus),
            (status = 404, description = "The pages are off (`ui.enabled = false`).", body = ErrorBody<'_>),
        )
    )]
    fn console_status() {}

    /// Prometheus metrics
    ///
    /// The text exposition format, `infergate_*` names.
    #[utoipa::path(
        get,
        path = "/metrics",
        tag = "gateway",
        responses((status = 200, description = "The metrics.", body = String, content_type = "text/plain"))
    )]
    fn metrics() {}

    /// This document
    ///
    /// The OpenAPI 3.1 document of every HTTP route.
    #[utoipa::path(
        get,
        path = "/openapi.json",
        tag = "gateway",
        responses((status = 200, description = "The document.", body = Object, content_type = "application/json"))
    )]
    fn openapi_json() {}

    /// Server metadata
    #[utoipa::path(
        get,
        path = "/v2",
        tag = "oip",
        responses((status = 200, description = "Name, version and extensions.", body = OipServerMetadata))
    )]
    fn oip_server_metadata() {}

    /// Server liveness
    #[utoipa::path(
        get,
        path = "/v2/health/live",
        tag = "oip",
        responses((status = 200, description = "The process serves.", body = OipLive))
    )]
    fn oip_server_live() {}

    /// Server readiness
    ///
    /// As `GET /ready`.
    #[utoipa::path(
        get,
        path = "/v2/health/ready",
        tag = "oip",
        responses(
            (status = 200, description = "Ready.", body = OipReady),
            (status = 503, description = "Not ready.", body = OipReady),
        )
    )]
    fn oip_server_ready() {}

    /// Model metadata
    ///
    /// Its versions, input and output tensors; a model that serves nothing says why.
    #[utoipa::path(
        get,
        path = "/v2/models/{model}",
        tag = "oip",
        params(OipModel),
        responses(
            (status = 200, description = "The model's metadata.", body = OipModelMetadata),
            (status = 503, description = "The model (or version) does not serve.", body = OipErrorBody),
        )
    )]
    fn oip_model_metadata() {}

    /// Model readiness
    #[utoipa::path(
        get,
        path = "/v2/models/{model}/ready",
        tag = "oip",
        params(OipModel),
        responses(
            (status = 200, description = "It serves and the gateway is ready.", body = OipModelReady<'_>),
            (status = 503, description = "It does not serve, or the gateway is not ready.", body = OipModelReady<'_>),
        )
    )]
    fn oip_model_ready() {}

    /// Inference
    ///
    /// The request's one input, split into rows, each answered as `/predict` answers one
    /// (cache, coalescing, batching, the log). JSON `data`, or binary tensor data after
    /// the JSON (`Inference-Header-Content-Length`); the output as JSON, as binary
    /// (`binary_data`), or as the classification extension's `"p:id:label"` strings.
    #[utoipa::path(
        post,
        path = "/v2/models/{model}/infer",
        tag = "oip",
        params(
            OipModel,
            ("Inference-Header-Content-Length" = Option<u64>, Header, description = "With binary tensor data: the length of the JSON that starts the body."),
            ("X-Request-Timeout" = Option<String>, Header, description = "This request's deadline (`250ms`, `2s`, `1.5s`, `100us`), cut to `admission.max_deadline_ms`."),
            ("Cache-Control" = Option<String>, Header, description = "`no-cache`, `no-store` or `max-age=0`: compute every row afresh."),
        ),
        request_body(
            description = "`$inference_request`, alone or followed by binary tensor data.",
            content(
                (InferRequest = "application/json"),
                (BinaryBody = "application/octet-stream"),
            )
        ),
        responses(
            (status = 200, description = "`$inference_response`; with binary outputs, followed by their bytes.",
                content(
                    (InferResponse<'_> = "application/json"),
                    (BinaryBody = "application/octet-stream"),
                ),
                headers(
                    ("X-Cache" = String, description = "The rows' cache outcome when they agree, else `mixed`."),
                    ("Inference-Header-Content-Length" = u64, description = "With binary outputs: the length of the JSON that starts the body."),
                )),
            (status = 400, description = "Malformed JSON, or an unreadable `X-Request-Timeout`.", body = OipErrorBody),
            (status = 413, description = "The body, or an image's dimensions, are too large.", body = OipErrorBody),
            (status = 415, description = "An input kind the model does not take, or an image format not accepted.", body = OipErrorBody),
            (status = 422, description = "Tensors that cannot be used: names, datatypes, shapes, counts, values.", body = OipErrorBody),
            (status = 503, description = "Overloaded, the model (or version) is unavailable, or the gateway is shutting down.", body = OipErrorBody,
                headers(("Retry-After" = u64, description = "Seconds to wait."))),
            (status = 504, description = "No answer within the request's deadline.", body = OipErrorBody),
        )
    )]
    fn oip_model_infer() {}

    /// Repository index
    ///
    /// Every model the repository knows, one entry per version, with its state.
    #[utoipa::path(
        post,
        path = "/v2/repository/index",
        tag = "repository",
        request_body(content = Option<IndexRequest>, description = "Optional: `ready: true` lists only the versions that serve."),
        responses(
            (status = 200, description = "The index.", body = Vec<IndexEntry>),
            (status = 400, description = "The body is not `{\"ready\": true|false}`.", body = OipErrorBody),
        )
    )]
    fn repository_index() {}

    /// Load a model
    ///
    /// Loads (or reloads) the model from the repository; the versions serving go on
    /// serving until the new ones are ready.
    #[utoipa::path(
        post,
        path = "/v2/repository/models/{model}/load",
        tag = "repository",
        params(RepositoryModel),
        request_body(content = Option<RepositoryModelRequest>, description = "Optional, ignored."),
        responses(
            (status = 200, description = "Loaded.", body = RepositoryModelDone),
            (status = 400, description = "The load failed (its files, its manifest, its `model.toml`), or there is no repository.", body = OipErrorBody),
            (status = 404, description = "The repository has no model by that name.", body = OipErrorBody),
            (status = 503, description = "The gateway is shutting down.", body = OipErrorBody),
        )
    )]
    fn repository_model_load() {}

    /// Unload a model
    ///
    /// Stops serving the model; requests for it get 503 until it is loaded again.
    #[utoipa::path(
        post,
        path = "/v2/repository/models/{model}/unload",
        tag = "repository",
        params(RepositoryModel),
        request_body(content = Option<RepositoryModelRequest>, description = "Optional, ignored."),
        responses(
            (status = 200, description = "Unloaded.", body = RepositoryModelDone),
            (status = 400, description = "The unload failed, or there is no repository.", body = OipErrorBody),
            (status = 404, description = "The repository has no model by that name.", body = OipErrorBody),
            (status = 503, description = "The gateway is shutting down.", body = OipErrorBody),
        )
    )]
    fn repository_model_unload() {}
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use http::Method;

    use super::*;
    use crate::http::route::Protocol;
    use crate::http::route_of;

    fn committed_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
    }

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let generated = render();
        let path = committed_path();
        if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "openapi.json differs from the document the code generates; rewrite it with \
             `UPDATE_OPENAPI=1 cargo test --lib openapi` and commit it"
        );
        assert_eq!(&DOCUMENT[..], generated.as_bytes());
    }

    /// The methods the document gives `item`.
    fn documented_methods(item: &PathItem) -> Vec<Method> {
        let methods = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::DELETE, item.delete.is_some()),
            (Method::PATCH, item.patch.is_some()),
        ];
        methods
            .into_iter()
            .filter_map(|(method, present)| present.then_some(method))
            .collect()
    }

    #[test]
    fn every_http_route_is_documented_with_the_methods_it_takes() {
        let doc = ApiDoc::openapi();
        for (path, item) in &doc.paths.paths {
            let route = ROUTES.iter().find(|r| r.documents(path));
            let route = route.unwrap_or_else(|| panic!("{path} is documented but not routed"));
            assert!(
                std::ptr::eq(route_of(path), route),
                "{path} is documented on one route and routed to another"
            );
            for method in documented_methods(item) {
                assert!(
                    route.methods.allows(&method),
                    "{method} {path} is not routed"
                );
            }
            // Each route's `Allow` names the methods documented (`HEAD` goes with `GET`).
            let methods = documented_methods(item);
            let mut documented: Vec<&str> = methods.iter().map(Method::as_str).collect();
            if documented.contains(&"GET") {
                documented.push("HEAD");
            }
            assert_eq!(documented.join(", "), route.methods.allow(), "{path}");
        }
        for route in ROUTES {
            // gRPC is not HTTP's to document; a page is for people, not an operation.
            if matches!(route.protocol, Protocol::Grpc | Protocol::Page) {
                continue;
            }
            let paths = [Some(route.path.to_owned()), route.versioned_path()];
            for path in paths.into_iter().flatten() {
                assert!(
                    doc.paths.paths.contains_key(&path),
                    "{path} ({}) has no path in the document",
                    route.label
                );
            }
        }
    }

    #[test]
    fn versioned_paths_are_the_unversioned_on_one_version() {
        let doc: serde_json::Value = serde_json::from_slice(&DOCUMENT).unwrap();
        let op = |path: &str, method: &str| doc["paths"][path][method].clone();
        let one = op("/v2/models/{model}/infer", "post");
        let versioned = op("/v2/models/{model}/versions/{version}/infer", "post");
        assert_eq!(one["responses"], versioned["responses"]);
        assert_eq!(one["requestBody"], versioned["requestBody"]);
        assert_eq!(versioned["operationId"], "oip_model_version_infer");
        let names: Vec<_> = versioned["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names[..2], ["model", "version"]);
    }

    #[test]
    fn keys_and_error_bodies_follow_the_route_table() {
        let doc: serde_json::Value = serde_json::from_slice(&DOCUMENT).unwrap();
        let op = |path: &str, method: &str| doc["paths"][path][method].clone();
        assert!(op("/health", "get")["security"].is_null());
        assert!(op("/openapi.json", "get")["security"].is_null());
        assert_eq!(
            op("/stats", "get")["security"],
            serde_json::json!([{"bearer": []}, {"api_key": []}])
        );
        let schema = |path: &str, method: &str, status: &str| {
            op(path, method)["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                .clone()
        };
        assert_eq!(
            schema("/predict", "post", "401"),
            "#/components/schemas/ErrorBody"
        );
        assert_eq!(
            schema("/v2/models/{model}/infer", "post", "401"),
            "#/components/schemas/OipErrorBody"
        );
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
