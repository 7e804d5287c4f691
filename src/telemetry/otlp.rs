//! The OTLP/HTTP exporter behind `super::traces::Traces` (feature `otlp`): spans are
//! built here with the gateway's own trace and span ids (the SDK's tracer would pick its
//! own span id, which the answer's `traceparent` could not name) and handed to the SDK's
//! batch processor, whose thread posts them; a request only enqueues.

use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor as _,
};

use crate::telemetry::TraceSettings;
use crate::telemetry::request_span::FinishedRequest;

/// The exporter refused its settings (the endpoint, most likely).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExporterError(String);

/// The running export.
pub struct Export {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
}

impl Export {
    /// Starts the exporter and its batch thread, posting to `url`.
    pub fn start(cfg: &TraceSettings, url: &str) -> Result<Self, ExporterError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(cfg.timeout)
            .build()
            .map_err(|e| ExporterError(e.to_string()))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(cfg.queue_capacity)
            .with_max_export_batch_size(cfg.max_export_batch_size.min(cfg.queue_capacity))
            .with_scheduled_delay(cfg.export_interval)
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        processor.set_resource(
            &Resource::builder_empty()
                .with_service_name(cfg.service_name.clone())
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(Self {
            processor,
            scope: InstrumentationScope::builder("infergate")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    /// Enqueues the span of `request`, which ended now.
    pub fn send(&self, request: &FinishedRequest<'_>) {
        self.processor.on_end(self.span(request, SystemTime::now()));
    }

    /// Flushes what is queued and stops the batch thread.
    pub fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown() {
            tracing::warn!(error = %e, "OTLP trace export: the last spans may be lost");
        }
    }

    fn span(&self, r: &FinishedRequest<'_>, end: SystemTime) -> SpanData {
        let trace = r.trace;
        let mut attributes = vec![
            KeyValue::new("http.request.method", r.method.as_str().to_owned()),
            KeyValue::new("http.route", r.route),
            KeyValue::new("http.response.status_code", i64::from(r.status)),
            KeyValue::new("infergate.request_id", r.request_id.to_owned()),
        ];
        let named = [
            ("infergate.api_key", r.key),
            ("infergate.model", r.model),
            ("infergate.cache", r.cache),
        ];
        for (name, value) in named {
            if let Some(value) = value {
                attributes.push(KeyValue::new(name, value.to_owned()));
            }
        }
        for (phase, took) in r.phases {
            attributes.push(KeyValue::new(
                format!("infergate.phase.{phase}_ms"),
                took.as_secs_f64() * 1e3,
            ));
        }
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes(trace.trace_id),
                SpanId::from_bytes(trace.span_id),
                TraceFlags::new(trace.flags),
                false,
                TraceState::default(),
            ),
            parent_span_id: trace.parent_id.map_or(SpanId::INVALID, SpanId::from_bytes),
            parent_span_is_remote: trace.parent_id.is_some(),
            span_kind: SpanKind::Server,
            name: format!("{} {}", r.method, r.route).into(),
            start_time: end.checked_sub(r.duration).unwrap_or(end),
            end_time: end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            // A server span is an error for a 5xx only: a 4xx is the client's (OTel's HTTP
            // conventions).
            status: if r.status >= 500 {
                Status::error(format!("HTTP {}", r.status))
            } else {
                Status::Unset
            },
            instrumentation_scope: self.scope.clone(),
        }
    }
}
