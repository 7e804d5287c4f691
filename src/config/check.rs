//! What is wrong with a configuration: the values a section's `validate` finds outside what
//! their keys allow ([`Invalid`]), and the loader's reports, each naming where the value
//! came from ([`ConfigError`]).

/// One configuration value outside what its key allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    /// Dotted key (`server.backlog`).
    pub key: &'static str,
    /// What is wrong, and what is allowed.
    pub message: &'static str,
}

/// The failures found by one validation pass, in the order the checks ran.
#[derive(Debug, Default)]
pub struct Checks(Vec<Invalid>);

impl Checks {
    /// Records that `key` is invalid, with `message`, unless `ok`.
    pub fn check(&mut self, ok: bool, key: &'static str, message: &'static str) {
        if !ok {
            self.0.push(Invalid { key, message });
        }
    }

    /// Every failure recorded.
    pub fn into_failures(self) -> Vec<Invalid> {
        self.0
    }
}

/// One configuration problem and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key (`server.listen`), or empty when the whole source is at fault.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// Where the value came from: a file and key, an environment variable, a secret file,
    /// a flag.
    pub source: String,
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e.key.is_empty() {
                true => write!(f, "  - {} (in {})", e.message, e.source)?,
                false => write!(f, "  - {}: {} (from {})", e.key, e.message, e.source)?,
            }
        }
        Ok(())
    }
}
