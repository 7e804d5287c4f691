//! Logging: a `tracing` subscriber writing pretty or JSON lines to stderr.
//!
//! Span fields used across the crate: `request_id`, `method`, `route`, `status`,
//! `latency_ms`, `model`, `cache`. One span per request is opened in `http`. Warnings a
//! client can trigger at will are counted and summarised instead ([`client_noise`]).
//! Request spans can also go to an OpenTelemetry collector ([`traces`]).

pub mod client_noise;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod request_span;
pub mod traces;

use std::io::IsTerminal as _;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use serde::{Deserialize, Serialize};

use crate::telemetry::client_noise::HoldBack;

/// Log line format (`log.format`, `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// How the process logs (`[log]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Pretty or JSON lines.
    pub format: LogFormat,
    /// The tracing filter, unless `RUST_LOG` is set.
    pub level: String,
}

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `log.level` (or `RUST_LOG`) is not a valid filter directive.
    #[error("invalid log filter {directive:?}")]
    Filter {
        directive: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadySet,
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(cfg: &LogSettings) -> Result<(), TelemetryError> {
    let directive = std::env::var("RUST_LOG").unwrap_or_else(|_| cfg.level.clone());
    let filter = EnvFilter::try_new(&directive).map_err(|source| TelemetryError::Filter {
        directive: directive.clone(),
        source,
    })?;
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(HoldBack);
    let result = match cfg.format {
        LogFormat::Json => registry
            .with(
                output
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        // Colour only for a person at a terminal, not in files or `docker logs`.
        LogFormat::Pretty => registry
            .with(output.with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadySet)
}

/// The export (`[otlp]`), when it is on.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The collector's URL spans are posted to, the traces path included.
    pub url: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces sampled, 0 to 1.
    pub sample_ratio: f64,
    /// Longest a span waits for its batch to be exported.
    pub export_interval: Duration,
    /// Spans waiting for export; more are dropped.
    pub queue_capacity: usize,
    /// Most spans in one export post (a full batch is posted at once).
    pub max_export_batch_size: usize,
    /// Longest one export may take.
    pub timeout: Duration,
}
