//! The last stage of every request: the answer (a refusal rendered as its route's protocol
//! answers one), its headers (`X-Request-Id`, `Server-Timing`, `traceparent`, the rate
//! limit's), the request metrics, the exported trace span, and the log line.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::Either;
use tokio::time::Instant;
use tracing::{Span, field};

use crate::http::admit::Admission;
use crate::http::error::ApiError;
use crate::http::route::{Protocol, RouteDef};
use crate::http::{Panicked, ResponseBody, Timing, grpc, pages, request_id, request_metrics};
use crate::predict::RequestOptions;
use crate::rate_limit::Verdict;
use crate::state::Serving;
use crate::telemetry::traces::FinishedRequest;
use crate::trace_context::{TRACEPARENT, TraceContext};

/// What a handler's run came to: its answer, its refusal, or a panic.
pub(crate) type Outcome = Result<Result<Response<ResponseBody>, ApiError>, Panicked>;

/// One request as the edge follows it from its head to its answer.
pub struct Exchange {
    started: Instant,
    route: &'static RouteDef,
    request_id: Arc<str>,
    trace: TraceContext,
    method: Method,
    /// Whether the span was made up front (this module's debug events are on).
    eager: bool,
    /// The request's span: disabled unless `eager`, until an answer needs a log line.
    pub span: Span,
    pub admission: Admission,
    pub timing: Timing,
}

impl Exchange {
    /// Starts following a request admitted (or refused) as `admission` says.
    pub fn begin<B>(
        serving: &Serving,
        req: &Request<B>,
        route: &'static RouteDef,
        started: Instant,
        admission: Admission,
    ) -> Self {
        let trace = serving
            .traces
            .sample(TraceContext::from_headers(req.headers()));
        let mut exchange = Self {
            started,
            route,
            request_id: request_id(req.headers()),
            trace,
            method: req.method().clone(),
            // A span formats its fields when it is made, whether or not an event is ever
            // written in it. Unless this module's debug events are on, the span is made
            // only for an answer that gets a log line (a 5xx), once everything is known;
            // events from deeper down a request then carry no request fields (the 5xx
            // line that follows them does).
            eager: tracing::enabled!(tracing::Level::DEBUG),
            span: Span::none(),
            admission,
            timing: Timing::default(),
        };
        if exchange.eager {
            exchange.span = exchange.new_span();
        }
        exchange
    }

    /// The options the request's handler runs with.
    pub fn options(&self, serving: &Serving) -> RequestOptions {
        RequestOptions {
            bypass_cache: false,
            request_id: self.request_id.clone(),
            client_addr: self.admission.client_addr,
            received: self.started,
            api_key: self.admission.key.clone(),
            deadline: serving.limits.deadline.default_for(self.started),
            trace: self.trace,
        }
    }

    /// Turns the outcome into the answer, with its headers, and accounts for it.
    pub(crate) fn finish(self, serving: &Serving, outcome: Outcome) -> Response<ResponseBody> {
        let (mut response, span) = self.answer(outcome);
        let total = self.started.elapsed();
        // Stamped at both ends, so a request counts as activity until it is answered.
        serving.last_request.stamp(self.started + total);
        self.headers(response.headers_mut(), total);
        let status = response.status().as_u16();
        request_metrics::record(self.route.label, status, total.as_secs_f64());
        if serving.traces.is_on() {
            let answered_by = self.timing.answered_by.as_ref();
            serving.traces.finish(&FinishedRequest {
                trace: &self.trace,
                method: &self.method,
                route: self.route.label,
                status,
                duration: total,
                request_id: &self.request_id,
                key: self.admission.key.as_deref(),
                model: answered_by.map(|(model, _)| &**model),
                cache: answered_by.map(|&(_, cache)| cache),
                phases: &self.timing.entries,
            });
        }
        let span = if status >= 500 && span.is_disabled() {
            self.late_span()
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

    /// The answer, and the span its log lines go to.
    fn answer(&self, outcome: Outcome) -> (Response<ResponseBody>, Span) {
        match outcome {
            Ok(Ok(response)) => (response, self.span.clone()),
            Ok(Err(err)) => {
                let span = if err.status().is_server_error() {
                    self.late_span()
                } else {
                    self.span.clone()
                };
                span.in_scope(
                    || tracing::debug!(code = err.code(), error = %err, "request refused"),
                );
                (error_response(self.route.protocol, err), span)
            }
            Err(Panicked) => {
                let span = self.late_span();
                span.in_scope(|| {
                    tracing::error!("handler panicked; answering 500 and carrying on");
                });
                (
                    error_response(self.route.protocol, ApiError::Internal),
                    span,
                )
            }
        }
    }

    /// The headers every answer carries.
    fn headers(&self, headers: &mut HeaderMap, total: std::time::Duration) {
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert("x-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.timing.header(total)) {
            headers.insert("server-timing", v);
        }
        headers.insert(TRACEPARENT, self.trace.header_value());
        if let Some(verdict) = &self.admission.verdict {
            rate_limit_headers(headers, verdict);
        }
        if self.route.protocol == Protocol::Page {
            pages::security_headers(headers);
        }
    }

    /// The span for a log line at the end: the request's own when it was made up front,
    /// else one made now.
    fn late_span(&self) -> Span {
        if self.eager {
            self.span.clone()
        } else {
            self.new_span()
        }
    }

    /// The span of one request; `status`, `latency_ms`, `model` and `cache` are recorded
    /// later.
    fn new_span(&self) -> Span {
        let span = tracing::info_span!(
            "request",
            request_id = %self.request_id,
            trace_id = %self.trace.trace_id_hex(),
            method = %self.method,
            route = self.route.label,
            key = field::Empty,
            status = field::Empty,
            latency_ms = field::Empty,
            model = field::Empty,
            cache = field::Empty,
        );
        if let Some(key) = &self.admission.key {
            span.record("key", &**key);
        }
        span
    }
}

/// A refusal as the route's protocol answers one: a `grpc-status` for gRPC, the OIP's
/// `{"error": "…"}` on its REST routes, our JSON error elsewhere.
fn error_response(protocol: Protocol, err: ApiError) -> Response<ResponseBody> {
    match protocol {
        Protocol::Grpc => grpc::status(&err).into_http().map(Either::Right),
        p if p.oip_errors() => err.into_oip_response().map(Either::Left),
        _ => err.into_response().map(Either::Left),
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
