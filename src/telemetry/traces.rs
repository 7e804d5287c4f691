//! Request spans for an OpenTelemetry collector: one server span per answered request,
//! with the ids the answer's `traceparent` and the prediction's log row carry, so a trace
//! in the collector, the client's trace and the row are the same one. Off (and free)
//! unless `otlp.endpoint` is set in a binary built with the `otlp` feature.

pub use crate::telemetry::TraceSettings;
pub use crate::telemetry::request_span::FinishedRequest;
use crate::trace_context::TraceContext;

#[cfg(feature = "otlp")]
use crate::telemetry::otlp;

/// Why the export could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// The OTLP exporter refused its settings (the endpoint, most likely).
    #[error("cannot start the OTLP trace export to {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// Where finished request spans go.
pub struct Traces {
    sample_ratio: f64,
    #[cfg(feature = "otlp")]
    export: Option<otlp::Export>,
}

impl Traces {
    /// No export: [`Traces::finish`] does nothing.
    pub fn off() -> Self {
        Self {
            sample_ratio: 1.0,
            #[cfg(feature = "otlp")]
            export: None,
        }
    }

    /// The export `cfg` asks for (off with `None`). Validation has refused an endpoint in
    /// a binary without the `otlp` feature.
    pub fn start(cfg: Option<&TraceSettings>) -> Result<Self, TracesError> {
        let Some(cfg) = cfg else {
            return Ok(Self::off());
        };
        let url = cfg.url.clone();
        #[cfg(feature = "otlp")]
        {
            let export = otlp::Export::start(cfg, &url).map_err(|e| TracesError::Exporter {
                endpoint: url.clone(),
                reason: e.to_string(),
            })?;
            tracing::info!(
                endpoint = %url,
                sample_ratio = cfg.sample_ratio,
                "OTLP trace export on: one span per request"
            );
            Ok(Self {
                sample_ratio: cfg.sample_ratio,
                export: Some(export),
            })
        }
        #[cfg(not(feature = "otlp"))]
        {
            Err(TracesError::Exporter {
                endpoint: url,
                reason: "built without the `otlp` feature".into(),
            })
        }
    }

    /// Whether spans are exported.
    pub fn is_on(&self) -> bool {
        #[cfg(feature = "otlp")]
        {
            self.export.is_some()
        }
        #[cfg(not(feature = "otlp"))]
        {
            false
        }
    }

    /// `trace` with its sampled flag decided: a client's `traceparent` decides for its
    /// own trace; a new trace is sampled at `otlp.sample_ratio` (by its id, so every
    /// instance decides alike). Without export the flag stays as it was.
    pub fn sample(&self, mut trace: TraceContext) -> TraceContext {
        if self.is_on() && trace.parent_id.is_none() {
            trace.flags = u8::from(sampled(&trace.trace_id, self.sample_ratio));
        }
        trace
    }

    /// Hands a finished request's span to the export, if its trace is sampled; never
    /// waits (a full export queue drops it).
    pub fn finish(&self, request: &FinishedRequest<'_>) {
        #[cfg(feature = "otlp")]
        if let Some(export) = &self.export
            && request.trace.flags & 0x01 == 0x01
        {
            export.send(request);
        }
        #[cfg(not(feature = "otlp"))]
        let _ = request;
    }

    /// Sends what is queued and stops the export, at the end of the drain.
    pub fn shutdown(&self) {
        #[cfg(feature = "otlp")]
        if let Some(export) = &self.export {
            export.shutdown();
        }
    }
}

/// Whether a new trace is sampled at `ratio`: its id's first 8 bytes (random in a UUIDv4)
/// read as a fraction of 2^64, below `ratio`.
fn sampled(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&trace_id[..8]);
    // Exact enough: a u64 as f64 loses only bits far below any ratio anyone configures.
    #[allow(clippy::cast_precision_loss)]
    let fraction = u64::from_be_bytes(head) as f64 / 18_446_744_073_709_551_616.0;
    fraction < ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8) -> [u8; 16] {
        let mut id = [0x11u8; 16];
        id[0] = first;
        id
    }

    #[test]
    fn the_ratio_samples_by_trace_id() {
        assert!(sampled(&id(0xff), 1.0));
        assert!(!sampled(&id(0x00), 0.0));
        assert!(sampled(&id(0x10), 0.25), "0x10.. is 1/16 of the way");
        assert!(!sampled(&id(0x80), 0.25), "0x80.. is half way");
        let ids = (0..=255u8).filter(|&b| sampled(&id(b), 0.5)).count();
        assert_eq!(ids, 128);
    }

    #[test]
    fn without_export_the_flags_are_left_alone() {
        let traces = Traces::off();
        let trace = TraceContext::from_headers(&http::HeaderMap::new());
        assert_eq!(traces.sample(trace), trace);
        assert!(!traces.is_on());
    }
}
