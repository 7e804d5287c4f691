//! HTTP: the router and what every request gets whatever its route — admission (head
//! limits, API key, rate limit), a span, a request id, `Server-Timing`, metrics, and a 500
//! JSON answer instead of a dropped connection if a handler panics. The routes themselves
//! are one table ([`ROUTES`], the rows' type in [`route`]); the connection's hyper service
//! is `server::service`'s.

pub mod admit;
pub mod answers;
pub mod body;
pub mod error;
pub mod finish;
pub mod grpc;
pub mod multipart;
pub mod oip;
pub mod pages;
pub mod repository;
pub mod openapi;
pub mod request_metrics;
pub mod route;
pub mod routes;
pub mod tensor;
pub mod types;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::Scope;
use crate::http::body::RequestBody;
use crate::http::error::ApiError;
use crate::http::finish::Exchange;
use crate::http::route::{Answer, Call, Handler, IntoAnswer, Methods, Protocol, RouteDef, Shape};
use crate::ids::uuid_v7;
use crate::predict::RequestOptions;
use crate::state::{Gateway, PagesSettings};
use Methods::{Post, Read};
use Protocol::{Grpc, Oip, Page, Repository, Seed};
use Shape::{Exact, OrSlash, Prefix, Versioned};

/// Response type of every route but gRPC's.
pub type HttpResponse = Response<Full<Bytes>>;

/// The body of every answer the service gives: bytes, or a gRPC answer (frames, then the
/// status in trailers).
pub type ResponseBody = http_body_util::Either<Full<Bytes>, tonic::body::Body>;

/// Phases of one request, rendered as `Server-Timing`, and (for an exported trace span)
/// which model answered from where.
#[derive(Debug, Default)]
pub struct Timing {
    entries: Vec<(&'static str, Duration)>,
    answered_by: Option<(Arc<str>, &'static str)>,
}

impl Timing {
    /// Adds a measured phase.
    pub fn add(&mut self, phase: &'static str, took: Duration) {
        self.entries.push((phase, took));
    }

    /// Notes the model and cache outcome of a prediction, for its trace span.
    pub fn answered_by(&mut self, model: &Arc<str>, cache: &'static str) {
        self.answered_by = Some((Arc::clone(model), cache));
    }

    fn header(&self, total: Duration) -> String {
        let mut out = String::with_capacity(24 * (self.entries.len() + 1));
        for (phase, took) in self.entries.iter().chain([&("total", total)]) {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(phase);
            out.push_str(";dur=");
            push_millis(&mut out, *took);
        }
        out
    }
}

/// Writes `d` in milliseconds with three decimals (microsecond resolution), from integers:
/// `{:.3}` on an `f64` is the slow path of `fmt`, and this runs on every answer.
fn push_millis(out: &mut String, d: Duration) {
    let micros = d.as_micros();
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

/// Answers one request in three stages: admit it (head limits, key, rate limit), run its
/// route's handler, and finish the answer (headers, metrics, trace, log line).
pub async fn handle(
    gateway: &Arc<Gateway>,
    req: Request<Incoming>,
    peer: Option<IpAddr>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    // The edge stages see only the request path; a route's handler sees the whole gateway.
    let serving = &gateway.serving;
    serving.last_request.stamp(started);
    // Every route's body, read or not, is drained once the answer is out (see RequestBody).
    let req = req.map(RequestBody::new);
    let route = pages::route(serving.pages, route_of(req.uri().path()));
    let admission = admit::admit(serving, &req, route, peer);
    let mut exchange = Exchange::begin(serving, &req, route, started, admission);
    let outcome = match exchange.admission.refused.take() {
        None => {
            let meta = exchange.options(serving);
            AssertUnwindSafe(dispatch(gateway, route, req, meta, &mut exchange.timing))
                .catch_unwind()
                .instrument(exchange.span.clone())
                .await
                .map_err(|_| Panicked)
        }
        Some(refused) => Ok(Err(refused)),
    };
    exchange.finish(serving, outcome)
}

/// A handler panicked (answered 500; the connection and the process carry on).
pub(crate) struct Panicked;

/// Marks an HTTP/1.1 request whose raw head carried both `Content-Length` and
/// `Transfer-Encoding` (see `server::h1_framing`).
#[derive(Debug, Clone, Copy)]
pub struct AmbiguousFraming;

/// The name of the verified client certificate (mTLS) a connection's requests came with.
#[derive(Debug, Clone)]
pub struct ClientCert(pub Arc<str>);

/// Runs the route's handler, once its method is one the route takes.
async fn dispatch(
    gateway: &Arc<Gateway>,
    route: &'static RouteDef,
    req: Request<RequestBody>,
    meta: RequestOptions,
    timing: &mut Timing,
) -> Result<Response<ResponseBody>, ApiError> {
    if !route.methods.allows(req.method()) {
        return Err(ApiError::MethodNotAllowed {
            allow: route.methods.allow(),
        });
    }
    (route.handler)(Call {
        gateway,
        route,
        req,
        meta,
        timing,
    })
    .await
}

/// A JSON answer: `body` with `status`.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    // Serializing the answer types cannot fail (no map with non-string keys); `{}` is the
    // harmless fallback.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The client's `X-Request-Id` if it is sane (1–128 visible ASCII characters from a safe
/// set), else a fresh UUIDv7.
pub fn request_id(headers: &HeaderMap) -> Arc<str> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
        })
        .map_or_else(new_request_id, Arc::from)
}

/// A fresh UUIDv7 as text, in one allocation (the `Arc`'s).
fn new_request_id() -> Arc<str> {
    let mut text = Uuid::encode_buffer();
    Arc::from(&*uuid_v7().hyphenated().encode_lower(&mut text))
}

// The route table.

/// A [`Handler`] from an `async fn(Call<'_>) -> Result<impl IntoAnswer, ApiError>`.
macro_rules! handler {
    ($f:path) => {{
        fn boxed(call: Call<'_>) -> Answer<'_> {
            Box::pin(async move { $f(call).await.map(IntoAnswer::into_answer) })
        }
        boxed
    }};
}

const fn row(
    path: &'static str,
    shape: Shape,
    methods: Methods,
    scope: Option<Scope>,
    protocol: Protocol,
    label: &'static str,
    handler: Handler,
) -> RouteDef {
    RouteDef {
        path,
        shape,
        methods,
        scope,
        protocol,
        label,
        handler,
    }
}

const OPEN: Option<Scope> = None;
const PREDICT: Option<Scope> = Some(Scope::Predict);
const ADMIN: Option<Scope> = Some(Scope::Admin);
/// A page's scope is `ui.scope`'s, decided at admission ([`pages::scope`]).
const PAGE: Option<Scope> = None;

/// Every route, matched in order (an exact row before a prefix that covers it): path,
/// shape, methods, scope, protocol, metric label, handler. The API's description is no
/// secret: clients fetch it before they have a key.
#[rustfmt::skip]
pub static ROUTES: &[RouteDef] = &[
    row("/health", Exact, Read, OPEN, Seed, "/health", handler!(routes::health)),
    row("/ready", Exact, Read, OPEN, Seed, "/ready", handler!(routes::ready)),
    row("/predict", Exact, Post, PREDICT, Seed, "/predict", handler!(routes::predict)),
    row("/stats", Exact, Read, ADMIN, Seed, "/stats", handler!(routes::stats)),
    row("/metrics", Exact, Read, ADMIN, Seed, "/metrics", handler!(routes::metrics)),
    row("/openapi.json", Exact, Read, OPEN, Seed, "/openapi.json", handler!(openapi::serve)),
    row("/", Exact, Read, PAGE, Page, "/", handler!(pages::page)),
    row("/docs", OrSlash, Read, PAGE, Page, "/docs", handler!(pages::page)),
    row("/ui/", Prefix, Read, PAGE, Page, "/ui", handler!(pages::page)),
    row("/console/status", Exact, Read, ADMIN, Seed, "/console/status", handler!(pages::status)),
    row("/v2/health/live", Exact, Read, OPEN, Oip, "/v2/health", handler!(oip::live)),
    row("/v2/health/ready", Exact, Read, OPEN, Oip, "/v2/health", handler!(oip::ready)),
    row("/v2", OrSlash, Read, PREDICT, Oip, "/v2/models/{model}", handler!(oip::server_metadata)),
    row("/v2/models/{model}", Versioned, Read, PREDICT, Oip, "/v2/models/{model}", handler!(oip::model_metadata)),
    row("/v2/models/{model}/ready", Versioned, Read, PREDICT, Oip, "/v2/models/{model}", handler!(oip::model_ready)),
    row("/v2/models/{model}/infer", Versioned, Post, PREDICT, Oip, "/v2/models/{model}/infer", handler!(oip::infer)),
    row("/v2/repository/index", Exact, Post, ADMIN, Repository, "/v2/repository", handler!(repository::index)),
    row("/v2/repository/models/{model}/load", Exact, Post, ADMIN, Repository, "/v2/repository", handler!(repository::load)),
    row("/v2/repository/models/{model}/unload", Exact, Post, ADMIN, Repository, "/v2/repository", handler!(repository::unload)),
    // Health checks are open, as `/v2/health` is; any other method is tonic's to answer.
    row("/inference.GRPCInferenceService/ServerLive", Exact, Post, OPEN, Grpc, "grpc:health", handler!(grpc::serve)),
    row("/inference.GRPCInferenceService/ServerReady", Exact, Post, OPEN, Grpc, "grpc:health", handler!(grpc::serve)),
    row(grpc::SERVICE_PREFIX, Prefix, Post, PREDICT, Grpc, "grpc:inference", handler!(grpc::serve)),
];

/// Every path no row matches. It needs a key too, so that probing tells a stranger
/// nothing, and answers 404 whatever the method.
pub static UNKNOWN: RouteDef = row(
    "",
    Exact,
    Methods::Any,
    PREDICT,
    Seed,
    "unknown",
    handler!(not_found),
);

async fn not_found(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(call.req.uri().path()))
}

/// The row `path` belongs to; [`UNKNOWN`] when none.
pub fn route_of(path: &str) -> &'static RouteDef {
    ROUTES
        .iter()
        .find(|route| route.params(path).is_some())
        .unwrap_or(&UNKNOWN)
}

/// The route table's labels split by who may call them while no keys are configured: open
/// to anyone, and admin (kept to this machine by protected mode); each once, in table
/// order, as `pages` serves and scopes the pages.
pub fn labels_by_scope(pages: PagesSettings) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut open, mut admin) = (Vec::new(), Vec::new());
    for route in ROUTES {
        if !std::ptr::eq(pages::route(pages, route), route) {
            continue;
        }
        let side = match pages::scope(pages, route) {
            Some(Scope::Admin) => &mut admin,
            _ => &mut open,
        };
        if !side.contains(&route.label) {
            side.push(route.label);
        }
    }
    (open, admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_labels_come_from_the_rows_scopes() {
        let pages = |enabled, scope| PagesSettings { enabled, scope };
        let (open, admin) = labels_by_scope(pages(true, None));
        assert_eq!(
            admin,
            ["/stats", "/metrics", "/console/status", "/v2/repository"]
        );
        for label in [
            "/health",
            "/ready",
            "/predict",
            "/openapi.json",
            "/",
            "/docs",
        ] {
            assert!(open.contains(&label), "{label} in {open:?}");
        }
        assert!(open.contains(&"/v2/models/{model}/infer") && open.contains(&"grpc:inference"));
        // Pages follow ui.scope, and are no route at all when off.
        let (open, admin) = labels_by_scope(pages(true, Some(Scope::Admin)));
        assert!(admin.contains(&"/") && admin.contains(&"/docs") && !open.contains(&"/"));
        let (open, admin) = labels_by_scope(pages(false, None));
        assert!(!open.contains(&"/") && !admin.contains(&"/"));
        assert!(admin.contains(&"/console/status"));
    }

    #[test]
    fn request_ids_are_honoured_only_when_sane() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(&*request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(&*request_id(&h), "has space");
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn server_timing_lists_phases_then_total() {
        let mut t = Timing::default();
        t.add("infer", Duration::from_micros(1500));
        assert_eq!(
            t.header(Duration::from_millis(2)),
            "infer;dur=1.500, total;dur=2.000"
        );
    }
}
