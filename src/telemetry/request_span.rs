//! One answered request as its span is exported: what `http` hands to the trace export
//! ([`super::traces`]) and the exporter (`super::otlp`, feature `otlp`) turns into a span.

use std::time::Duration;

use http::Method;

use crate::trace_context::TraceContext;

/// One answered request, as its span is exported.
#[derive(Debug)]
pub struct FinishedRequest<'a> {
    /// The request's trace and the gateway's span in it.
    pub trace: &'a TraceContext,
    pub method: &'a Method,
    /// The route label (`/predict`, `unknown`, …).
    pub route: &'static str,
    pub status: u16,
    /// From the head's arrival to the answer.
    pub duration: Duration,
    pub request_id: &'a str,
    /// The API key's name (never the key).
    pub key: Option<&'a str>,
    /// The model that answered, for a prediction.
    pub model: Option<&'a str>,
    /// `miss`, `hit-l1`, … for a prediction.
    pub cache: Option<&'a str>,
    /// The `Server-Timing` phases.
    pub phases: &'a [(&'static str, Duration)],
}
