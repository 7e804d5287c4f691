//! The `[otlp]` section: request spans sent to an OpenTelemetry collector over OTLP/HTTP
//! (protobuf), in a binary built with the `otlp` feature.

use std::time::Duration;

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::telemetry::traces::TraceSettings;

/// Request spans sent to an OpenTelemetry collector over OTLP/HTTP (protobuf), in a
/// binary built with `--features otlp`; off without `endpoint`.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpSection {
    /// The collector's OTLP/HTTP URL, `http://` or `https://`: a bare host and port
    /// (`http://otel-collector:4318`) gets the traces path `/v1/traces`; a URL with a path
    /// is used as it is. Unset: no export. The standard `OTEL_EXPORTER_OTLP_HEADERS`
    /// variable adds headers (a vendor's key).
    /// Example: `"http://otel-collector:4318"`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces (requests without a sampled-or-not `traceparent`) that are
    /// sampled, 0 to 1; a client's own `traceparent` flag decides for its requests.
    pub sample_ratio: f64,
    /// Milliseconds between exports (or sooner, once a batch is full).
    pub export_interval_ms: u64,
    /// Spans waiting for export; more are dropped rather than slowing a request.
    pub queue_capacity: usize,
    /// Most spans in one export post; a full batch is posted at once, without waiting for
    /// `export_interval_ms`. Lower it for a collector that limits the size of a request;
    /// at most `queue_capacity` count.
    pub max_export_batch_size: usize,
    /// Milliseconds one export may take.
    pub timeout_ms: u64,
}

impl Default for OtlpSection {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "infergate".into(),
            sample_ratio: 1.0,
            export_interval_ms: 5_000,
            queue_capacity: 4_096,
            max_export_batch_size: 512,
            timeout_ms: 10_000,
        }
    }
}

/// The OTLP/HTTP path for traces, added to an endpoint without one.
pub const TRACES_PATH: &str = "/v1/traces";

impl OtlpSection {
    /// The URL spans are posted to: `endpoint`, with [`TRACES_PATH`] when it names no
    /// path; `None` when export is off.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim_end_matches('/');
        let uri: http::Uri = endpoint.parse().ok()?;
        Some(if uri.path() == "/" {
            format!("{endpoint}{TRACES_PATH}")
        } else {
            endpoint.to_owned()
        })
    }

    /// The export's settings; `None` when export is off.
    pub fn settings(&self) -> Option<TraceSettings> {
        Some(TraceSettings {
            url: self.traces_url()?,
            service_name: self.service_name.clone(),
            sample_ratio: self.sample_ratio,
            export_interval: Duration::from_millis(self.export_interval_ms),
            queue_capacity: self.queue_capacity,
            max_export_batch_size: self.max_export_batch_size,
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }

    /// Checks the section.
    pub fn validate(&self, checks: &mut Checks) {
        if let Some(endpoint) = &self.endpoint {
            checks.check(
                cfg!(feature = "otlp"),
                "otlp.endpoint",
                "this binary was built without the `otlp` feature (cargo build --features otlp)",
            );
            let uri = endpoint.parse::<http::Uri>().ok();
            checks.check(
                uri.as_ref().is_some_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                }),
                "otlp.endpoint",
                "must be an http:// or https:// URL with a host",
            );
        }
        checks.check(
            (0.0..=1.0).contains(&self.sample_ratio),
            "otlp.sample_ratio",
            "must be between 0 and 1",
        );
        checks.check(
            self.export_interval_ms > 0,
            "otlp.export_interval_ms",
            "must be above 0",
        );
        checks.check(
            self.queue_capacity > 0,
            "otlp.queue_capacity",
            "must be above 0",
        );
        checks.check(
            self.max_export_batch_size > 0,
            "otlp.max_export_batch_size",
            "must be above 0",
        );
        checks.check(self.timeout_ms > 0, "otlp.timeout_ms", "must be above 0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::check::Invalid;

    fn with(endpoint: &str) -> OtlpSection {
        OtlpSection {
            endpoint: Some(endpoint.into()),
            ..OtlpSection::default()
        }
    }

    fn failures(section: &OtlpSection) -> Vec<Invalid> {
        let mut checks = Checks::default();
        section.validate(&mut checks);
        checks.into_failures()
    }

    #[test]
    fn a_bare_endpoint_gets_the_traces_path_and_one_with_a_path_is_kept() {
        assert_eq!(
            with("http://collector:4318").traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            with("http://collector:4318/").traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            with("https://otlp.example.com/api/v1/traces")
                .traces_url()
                .as_deref(),
            Some("https://otlp.example.com/api/v1/traces")
        );
        assert_eq!(OtlpSection::default().traces_url(), None);
    }

    #[test]
    fn the_export_gets_its_batch_size_and_durations() {
        let settings = OtlpSection {
            max_export_batch_size: 16,
            export_interval_ms: 250,
            ..with("http://collector:4318")
        }
        .settings()
        .unwrap();
        assert_eq!(settings.max_export_batch_size, 16);
        assert_eq!(settings.export_interval, Duration::from_millis(250));
        assert_eq!(
            OtlpSection::default().settings(),
            None,
            "off without an endpoint"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cfg = OtlpSection {
            endpoint: Some("collector:4318".into()),
            sample_ratio: 1.5,
            export_interval_ms: 0,
            max_export_batch_size: 0,
            ..OtlpSection::default()
        };
        let failed: Vec<&str> = failures(&cfg).iter().map(|f| f.key).collect();
        assert!(failed.contains(&"otlp.endpoint"));
        assert!(failed.contains(&"otlp.sample_ratio"));
        assert!(failed.contains(&"otlp.export_interval_ms"));
        assert!(failed.contains(&"otlp.max_export_batch_size"));
        let failed = failures(&OtlpSection::default()).len();
        assert_eq!(failed, 0, "the defaults (no endpoint) are valid");
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn an_endpoint_without_the_feature_is_refused() {
        let messages: Vec<String> = failures(&with("http://collector:4318"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("without the `otlp` feature"));
    }
}
