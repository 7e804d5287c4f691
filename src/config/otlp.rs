//! The `[otlp]` section: request spans sent to an OpenTelemetry collector over OTLP/HTTP
//! (protobuf), in a binary built with the `otlp` feature.

use serde::{Deserialize, Serialize};

/// The OTLP trace export; off without `endpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP URL, `http://` or `https://`: a bare host and port
    /// (`http://otel-collector:4318`) gets the traces path `/v1/traces`; a URL with a path
    /// is used as it is. `None`: no export. The standard `OTEL_EXPORTER_OTLP_HEADERS`
    /// variable adds headers (a vendor's key).
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
    /// Milliseconds one export may take.
    pub timeout_ms: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "infergate".into(),
            sample_ratio: 1.0,
            export_interval_ms: 5_000,
            queue_capacity: 4_096,
            timeout_ms: 10_000,
        }
    }
}

/// The OTLP/HTTP path for traces, added to an endpoint without one.
pub const TRACES_PATH: &str = "/v1/traces";

impl OtlpConfig {
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

    /// Checks the section; `check(ok, key, message)` records a failure.
    pub fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        if let Some(endpoint) = &self.endpoint {
            check(
                cfg!(feature = "otlp"),
                "otlp.endpoint",
                "this binary was built without the `otlp` feature (cargo build --features otlp)",
            );
            let uri = endpoint.parse::<http::Uri>().ok();
            check(
                uri.as_ref().is_some_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                }),
                "otlp.endpoint",
                "must be an http:// or https:// URL with a host",
            );
        }
        check(
            (0.0..=1.0).contains(&self.sample_ratio),
            "otlp.sample_ratio",
            "must be between 0 and 1",
        );
        check(
            self.export_interval_ms > 0,
            "otlp.export_interval_ms",
            "must be above 0",
        );
        check(
            self.queue_capacity > 0,
            "otlp.queue_capacity",
            "must be above 0",
        );
        check(self.timeout_ms > 0, "otlp.timeout_ms", "must be above 0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(endpoint: &str) -> OtlpConfig {
        OtlpConfig {
            endpoint: Some(endpoint.into()),
            ..OtlpConfig::default()
        }
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
        assert_eq!(OtlpConfig::default().traces_url(), None);
    }

    #[test]
    fn bad_values_are_named() {
        let mut failed = Vec::new();
        let cfg = OtlpConfig {
            endpoint: Some("collector:4318".into()),
            sample_ratio: 1.5,
            export_interval_ms: 0,
            ..OtlpConfig::default()
        };
        cfg.validate(&mut |ok, key, _| {
            if !ok {
                failed.push(key.to_owned());
            }
        });
        assert!(failed.contains(&"otlp.endpoint".to_owned()));
        assert!(failed.contains(&"otlp.sample_ratio".to_owned()));
        assert!(failed.contains(&"otlp.export_interval_ms".to_owned()));
        let mut failed = 0;
        OtlpConfig::default().validate(&mut |ok, _, _| failed += usize::from(!ok));
        assert_eq!(failed, 0, "the defaults (no endpoint) are valid");
    }

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn an_endpoint_without_the_feature_is_refused() {
        let mut messages = Vec::new();
        with("http://collector:4318").validate(&mut |ok, key, message| {
            if !ok {
                messages.push(format!("{key}: {message}"));
            }
        });
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(messages[0].contains("without the `otlp` feature"));
    }
}
