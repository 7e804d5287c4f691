//! HTTP: the hyper service for one connection, the route table, and what every request
//! gets whatever its route — a span, a request id, `Server-Timing`, metrics, and a 500 JSON
//! answer instead of a dropped connection if a handler panics.

pub mod body;
pub mod error;
pub mod grpc;
pub mod multipart;
pub mod oip;
pub mod repository;
pub mod openapi;
pub mod request_metrics;
pub mod routes;
pub mod types;

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONNECTION, HeaderValue, STRICT_TRANSPORT_SECURITY};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::{Instrument, Span, field};
use uuid::Uuid;

use crate::auth::{Caller, Scope};
use crate::http::body::RequestBody;
use crate::http::error::ApiError;
use crate::predict::RequestOptions;
use crate::rate_limit::{Client, Verdict};
use crate::server::idle::Activity;
use crate::state::Gateway;
use crate::telemetry::traces::FinishedRequest;
use crate::trace_context::{TRACEPARENT, TraceContext};

/// Response type of every route but gRPC's.
pub type HttpResponse = Response<Full<Bytes>>;

/// The body of every answer the service gives: bytes, or a gRPC answer (frames, then the
/// status in trailers).
pub type ResponseBody = http_body_util::Either<Full<Bytes>, tonic::body::Body>;

/// The routes, as `route` labels in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Health,
    Ready,
    Predict,
    Stats,
    Metrics,
    /// `GET /openapi.json`: the OpenAPI document of every HTTP route.
    OpenApi,
    /// OIP `/v2/health/live` and `/v2/health/ready`.
    OipHealth,
    /// OIP `/v2`, a model's metadata and readiness.
    OipMetadata,
    /// OIP `/v2/models/{m}[/versions/{v}]/infer`.
    OipInfer,
    /// The model repository API: `/v2/repository/index`, `…/models/{m}/load|unload`.
    Repository,
    /// OIP over gRPC: `ServerLive`, `ServerReady`.
    GrpcHealth,
    /// OIP over gRPC: metadata, readiness and `ModelInfer`.
    Grpc,
    Unknown,
}

impl Route {
    /// The route a path belongs to.
    pub fn of(path: &str) -> Self {
        match path {
            "/health" => Self::Health,
            "/ready" => Self::Ready,
            "/predict" => Self::Predict,
            "/stats" => Self::Stats,
            "/metrics" => Self::Metrics,
            "/openapi.json" => Self::OpenApi,
            p if p.starts_with(grpc::SERVICE_PREFIX) => match grpc::method(p) {
                Some(true) => Self::GrpcHealth,
                Some(false) => Self::Grpc,
                None => Self::Unknown,
            },
            p if p.starts_with(repository::PREFIX) => match repository::endpoint(p) {
                Some(_) => Self::Repository,
                None => Self::Unknown,
            },
            p if p.starts_with("/v2") => match oip::endpoint(p) {
                Some(oip::Endpoint::Live | oip::Endpoint::Ready) => Self::OipHealth,
                Some(oip::Endpoint::Model {
                    action: oip::Action::Infer,
                    ..
                }) => Self::OipInfer,
                Some(_) => Self::OipMetadata,
                None => Self::Unknown,
            },
            _ => Self::Unknown,
        }
    }

    /// Whether the route is the Open Inference Protocol's (its errors are `{"error": "…"}`).
    pub fn is_oip(self) -> bool {
        matches!(
            self,
            Self::OipHealth | Self::OipMetadata | Self::OipInfer | Self::Repository
        )
    }

    /// Whether the route is a gRPC method (its errors are a `grpc-status`).
    pub fn is_grpc(self) -> bool {
        matches!(self, Self::GrpcHealth | Self::Grpc)
    }

    /// The label used in metrics and logs (bounded: unknown paths share one label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Health => "/health",
            Self::Ready => "/ready",
            Self::Predict => "/predict",
            Self::Stats => "/stats",
            Self::Metrics => "/metrics",
            Self::OpenApi => "/openapi.json",
            Self::OipHealth => "/v2/health",
            Self::OipMetadata => "/v2/models/{model}",
            Self::OipInfer => "/v2/models/{model}/infer",
            Self::Repository => "/v2/repository",
            Self::GrpcHealth => "grpc:health",
            Self::Grpc => "grpc:inference",
            Self::Unknown => "unknown",
        }
    }

    /// The `Allow` header value of the route.
    fn allow(self) -> &'static str {
        match self {
            Self::Predict | Self::OipInfer | Self::Repository | Self::GrpcHealth | Self::Grpc => {
                "POST"
            }
            _ => "GET, HEAD",
        }
    }

    /// The API key scope the route needs (when keys are on); `None`: open to anyone.
    /// Unknown paths need a key too, so that probing them tells a stranger nothing.
    pub fn scope(self) -> Option<Scope> {
        match self {
            // The API's description is no secret: clients fetch it before they have a key.
            Self::Health | Self::Ready | Self::OpenApi | Self::OipHealth | Self::GrpcHealth => None,
            Self::Predict | Self::OipMetadata | Self::OipInfer | Self::Grpc | Self::Unknown => {
                Some(Scope::Predict)
            }
            Self::Stats | Self::Metrics | Self::Repository => Some(Scope::Admin),
        }
    }

    fn allows(self, method: &Method) -> bool {
        match self {
            Self::Predict | Self::OipInfer | Self::Repository | Self::GrpcHealth | Self::Grpc => {
                method == Method::POST
            }
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// Phases of one request, rendered as `Server-Timing`, and (for an exported trace span)
/// which model answered from where.
#[derive(Debug, Default)]
pub struct Timing {
    entries: Vec<(&'static str, Duration)>,
    answered_by: Option<(String, &'static str)>,
}

impl Timing {
    /// Adds a measured phase.
    pub fn add(&mut self, phase: &'static str, took: Duration) {
        self.entries.push((phase, took));
    }

    /// Notes the model and cache outcome of a prediction, for its trace span.
    pub fn answered_by(&mut self, model: &str, cache: &'static str) {
        self.answered_by = Some((model.to_owned(), cache));
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

/// The hyper service for one connection.
#[derive(Clone)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
    activity: Rc<Activity>,
    peer: Option<IpAddr>,
    close_when_draining: bool,
    hsts: Option<HeaderValue>,
    client_cert: Option<ClientCert>,
}

/// The name of the verified client certificate (mTLS) a connection's requests came with.
#[derive(Debug, Clone)]
pub struct ClientCert(pub Arc<str>);

impl GatewayService {
    /// A service answering from `gateway` to the client at `peer` (`None`: no IP address,
    /// as on the check socket), reporting requests in flight to `activity`. With
    /// `close_when_draining` (HTTP/1.1), every answer sent once the drain has begun, and
    /// the answer to the connection's last request under its cap, carries
    /// `Connection: close`, so the client knows not to reuse the connection.
    pub fn new(
        gateway: Arc<Gateway>,
        activity: Rc<Activity>,
        peer: Option<IpAddr>,
        close_when_draining: bool,
    ) -> Self {
        Self {
            gateway,
            activity,
            peer,
            close_when_draining,
            hsts: None,
            client_cert: None,
        }
    }

    /// Every request on this connection comes with this verified client certificate
    /// (`admin`, see `tls.client_ca_path`).
    pub fn with_client_cert(mut self, name: Option<Arc<str>>) -> Self {
        self.client_cert = name.map(ClientCert);
        self
    }

    /// Adds `Strict-Transport-Security: hsts` to every answer (HTTPS connections).
    pub fn with_hsts(mut self, hsts: Option<HeaderValue>) -> Self {
        self.hsts = hsts;
        self
    }
}

impl hyper::service::Service<Request<Incoming>> for GatewayService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>>>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let gateway = Arc::clone(&self.gateway);
        let ambiguous = self.activity.is_ambiguous(self.activity.begun());
        let in_flight = self.activity.begin_request();
        let last_on_connection = self.activity.at_request_cap();
        let peer = self.peer;
        let close_when_draining = self.close_when_draining;
        let hsts = self.hsts.clone();
        let mut req = req;
        if ambiguous {
            req.extensions_mut().insert(AmbiguousFraming);
        }
        if let Some(cert) = &self.client_cert {
            req.extensions_mut().insert(cert.clone());
        }
        Box::pin(async move {
            let mut response = handle(&gateway, req, peer).await;
            if let Some(hsts) = hsts {
                response
                    .headers_mut()
                    .insert(STRICT_TRANSPORT_SECURITY, hsts);
            }
            if ambiguous
                || close_when_draining && (last_on_connection || gateway.shutdown.is_draining())
            {
                // hyper closes an HTTP/1.1 connection after an answer saying so.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            drop(in_flight);
            Ok(response)
        })
    }
}

/// Answers one request: route, run the handler, and decorate the answer.
pub async fn handle(
    gateway: &Arc<Gateway>,
    req: Request<Incoming>,
    peer: Option<IpAddr>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    gateway.last_request.stamp(started);
    // Every route's body, read or not, is drained once the answer is out (see RequestBody).
    let req = req.map(RequestBody::new);
    let route = Route::of(req.uri().path());
    let request_id = request_id(req.headers());
    let trace = gateway
        .traces
        .sample(TraceContext::from_headers(req.headers()));
    let method = req.method().clone();
    // A span formats its fields when it is made, whether or not an event is ever written in
    // it. Unless this module's debug events are on, the span is made only for an answer
    // that gets a log line (a 5xx), once everything is known; events from deeper down a
    // request then carry no request fields (the 5xx line that follows them does).
    let eager = tracing::enabled!(tracing::Level::DEBUG);
    let span = if eager {
        request_span(&request_id, &trace, &method, route)
    } else {
        Span::none()
    };
    let mut timing = Timing::default();
    // A head past the limits is refused before anything is looked at (no key checked,
    // no token taken). Then who is asking: the check socket (no peer address) is trusted,
    // since only who can open its file reaches it.
    let caller = match (refuse_head(gateway, &req), peer) {
        (Some(refused), _) => Err(refused),
        (None, None) => Ok(Caller::Local),
        // A verified client certificate is an admin; no key is looked at.
        (None, Some(_)) => match req.extensions().get::<ClientCert>() {
            Some(ClientCert(name)) => Ok(Caller::Cert(Arc::clone(name))),
            None => gateway
                .auth
                .authorize(req.headers(), route.scope())
                .map_err(ApiError::from),
        },
    };
    let key = caller.as_ref().ok().and_then(Caller::key_name).cloned();
    if let Some(key) = &key {
        span.record("key", &**key);
    }
    let client_addr = peer.map(|p| gateway.rate_limits.client_addr(p, req.headers()));
    let verdict = match &caller {
        Ok(caller) if route.scope().is_some() => rate_limit(gateway, caller, client_addr),
        _ => None,
    };
    let caller = match (caller, &verdict) {
        (
            Ok(_),
            Some(Verdict {
                retry_after_s: Some(retry_after_s),
                ..
            }),
        ) => Err(ApiError::RateLimited {
            retry_after_s: *retry_after_s,
        }),
        (caller, _) => caller,
    };
    let outcome = match caller {
        Ok(_) => {
            let meta = RequestOptions {
                bypass_cache: false,
                request_id: request_id.clone(),
                client_addr,
                received: started,
                api_key: key.clone(),
                deadline: gateway.limits.deadline.default_for(started),
                trace,
            };
            AssertUnwindSafe(dispatch(gateway, route, req, meta, &mut timing))
                .catch_unwind()
                .instrument(span.clone())
                .await
        }
        Err(refused) => Ok(Err(refused)),
    };
    let late_span = || {
        if eager {
            span.clone()
        } else {
            let span = request_span(&request_id, &trace, &method, route);
            if let Some(key) = &key {
                span.record("key", &**key);
            }
            span
        }
    };
    let (mut response, span) = match outcome {
        Ok(Ok(response)) => (response, span.clone()),
        Ok(Err(err)) => {
            let span = if err.status().is_server_error() {
                late_span()
            } else {
                span.clone()
            };
            span.in_scope(|| tracing::debug!(code = err.code(), error = %err, "request refused"));
            (error_response(route, err), span)
        }
        Err(_) => {
            let span = late_span();
            span.in_scope(|| tracing::error!("handler panicked; answering 500 and carrying on"));
            (error_response(route, ApiError::Internal), span)
        }
    };
    let total = started.elapsed();
    // Stamped at both ends, so a request counts as activity until it is answered.
    gateway.last_request.stamp(started + total);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&timing.header(total)) {
        headers.insert("server-timing", v);
    }
    headers.insert(TRACEPARENT, trace.header_value());
    if let Some(verdict) = &verdict {
        rate_limit_headers(headers, verdict);
    }
    let status = response.status().as_u16();
    request_metrics::record(route, status, total.as_secs_f64());
    if gateway.traces.is_on() {
        let answered_by = timing.answered_by.as_ref();
        gateway.traces.finish(&FinishedRequest {
            trace: &trace,
            method: &method,
            route: route.as_str(),
            status,
            duration: total,
            request_id: &request_id,
            key: key.as_deref(),
            model: answered_by.map(|(model, _)| model.as_str()),
            cache: answered_by.map(|&(_, cache)| cache),
            phases: &timing.entries,
        });
    }
    let span = if status >= 500 && span.is_disabled() {
        late_span()
    } else {
        span
    };
    if !span.is_disabled() {
        span.record("status", status);
        span.record("latency_ms", total.as_secs_f64() * 1e3);
        if status >= 500 {
            span.in_scope(|| tracing::warn!("request failed"));
        } else {
            span.in_scope(|| tracing::debug!("request done"));
        }
    }
    response
}

/// Marks an HTTP/1.1 request whose raw head carried both `Content-Length` and
/// `Transfer-Encoding` (see `server::h1_framing`).
#[derive(Debug, Clone, Copy)]
pub struct AmbiguousFraming;

/// A request head refused before routing: one framed two ways (a smuggling attempt), or
/// more header fields than `http.max_headers` (hyper enforces the count itself on
/// HTTP/1.1; on HTTP/2 only their bytes are bounded).
fn refuse_head<B>(gateway: &Gateway, req: &Request<B>) -> Option<ApiError> {
    if req.extensions().get::<AmbiguousFraming>().is_some() {
        return Some(ApiError::AmbiguousFraming);
    }
    (req.headers().len() > gateway.limits.max_headers).then_some(ApiError::TooManyHeaders {
        limit: gateway.limits.max_headers,
    })
}

/// The caller's rate limit verdict: its key's bucket, or without a key its address's; the
/// check socket's requests (no address) are not limited.
fn rate_limit(gateway: &Gateway, caller: &Caller, client: Option<IpAddr>) -> Option<Verdict> {
    let limits = &gateway.rate_limits;
    if !limits.is_on() {
        return None;
    }
    match caller {
        Caller::Key(name) | Caller::Cert(name) => limits.check(Client::Key(Arc::clone(name))),
        Caller::Anonymous => limits.check(Client::Addr(client?)),
        Caller::Local => None,
    }
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers): the policy's
/// quota and window, what is left and when the bucket is whole again.
fn rate_limit_headers(headers: &mut HeaderMap, v: &Verdict) {
    let policy = format!("\"{}\";q={};w={}", v.policy, v.quota, v.window_s);
    let state = format!("\"{}\";r={};t={}", v.policy, v.remaining, v.reset_s);
    for (name, value, changes) in [
        ("ratelimit-policy", policy, false),
        ("ratelimit", state, true),
    ] {
        if let Ok(mut value) = HeaderValue::from_str(&value) {
            // A value new on every answer, entered in HTTP/2's HPACK table, would evict
            // the entries that repeat (and cost a table insert each time): sent as a
            // never-indexed literal instead (BENCHMARKS.md, the public edge).
            value.set_sensitive(changes);
            headers.insert(name, value);
        }
    }
}

/// The span of one request; `key` (the API key's name), `status`, `latency_ms`, `model`
/// and `cache` are recorded later.
fn request_span(request_id: &str, trace: &TraceContext, method: &Method, route: Route) -> Span {
    tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = %trace.trace_id_hex(),
        method = %method,
        route = route.as_str(),
        key = field::Empty,
        status = field::Empty,
        latency_ms = field::Empty,
        model = field::Empty,
        cache = field::Empty,
    )
}

async fn dispatch(
    gateway: &Arc<Gateway>,
    route: Route,
    req: Request<RequestBody>,
    meta: RequestOptions,
    timing: &mut Timing,
) -> Result<Response<ResponseBody>, ApiError> {
    if route == Route::Unknown {
        return Err(ApiError::NotFound(
            req.uri().path().chars().take(200).collect(),
        ));
    }
    if !route.allows(req.method()) {
        return Err(ApiError::MethodNotAllowed {
            allow: route.allow(),
        });
    }
    let answer = match route {
        Route::Health => routes::health(gateway),
        Route::Ready => routes::ready(gateway),
        Route::Predict => routes::predict(gateway, req, meta, timing).await?,
        Route::Stats => routes::stats(gateway).await,
        Route::Metrics => routes::metrics(gateway),
        Route::OpenApi => openapi::serve(),
        Route::OipHealth | Route::OipMetadata => oip::metadata(gateway, req.uri().path())?,
        Route::OipInfer => oip::infer(gateway, req, meta, timing).await?,
        Route::Repository => repository::handle(gateway, req, meta, timing).await?,
        Route::GrpcHealth | Route::Grpc => {
            // Read like every body (size, time, pace), with the deadline grpc-timeout names.
            let (parts, body) = req.into_parts();
            let (deadline, bytes) =
                routes::deadline_and_body(gateway, &parts, body, meta.received, timing).await?;
            let opts = RequestOptions { deadline, ..meta };
            let answer = grpc::serve(gateway, parts, bytes, opts).await;
            return Ok(answer.map(Either::Right));
        }
        Route::Unknown => return Err(ApiError::NotFound(req.uri().path().into())),
    };
    Ok(answer.map(Either::Left))
}

/// A refusal as the route's protocol answers one: a `grpc-status` for gRPC, the OIP's
/// `{"error": "…"}` on its REST routes, our JSON error elsewhere.
fn error_response(route: Route, err: ApiError) -> Response<ResponseBody> {
    if route.is_grpc() {
        grpc::status(&err).into_http().map(Either::Right)
    } else if route.is_oip() {
        err.into_oip_response().map(Either::Left)
    } else {
        err.into_response().map(Either::Left)
    }
}

/// The client's `X-Request-Id` if it is sane (1–128 visible ASCII characters from a safe
/// set), else a fresh UUIDv7.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b))
        })
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_honoured_only_when_sane() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
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

    #[test]
    fn routes_and_methods() {
        assert_eq!(Route::of("/predict"), Route::Predict);
        assert_eq!(Route::of("/predict/"), Route::Unknown);
        assert!(Route::Predict.allows(&Method::POST));
        assert!(!Route::Predict.allows(&Method::GET));
        assert!(Route::Health.allows(&Method::HEAD));
    }
}
