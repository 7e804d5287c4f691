//! The `[log]` section: the format and filter of the process's own log lines.

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::telemetry::{LogFormat, LogSettings};

/// Logging, to stderr.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `"pretty"` (for a person; coloured at a terminal) or `"json"` (one object per line).
    pub format: LogFormat,
    /// A tracing filter such as `"info"` or `"infergate=debug,info"`; `RUST_LOG` wins when
    /// set.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

impl LogSection {
    /// The subscriber's format and filter.
    pub fn settings(&self) -> LogSettings {
        LogSettings {
            format: self.format,
            level: self.level.clone(),
        }
    }

    /// Checks the filter.
    pub fn validate(&self, checks: &mut Checks) {
        checks.check(
            tracing_subscriber::EnvFilter::try_new(&self.level).is_ok(),
            "log.level",
            "is not a valid tracing filter (e.g. `info` or `infergate=debug,info`)",
        );
    }
}
