//! The layers that are not files: built-in defaults, environment variables and flags,
//! each named so that errors and `print-config --sources` can say where a value came from.

use std::net::SocketAddr;

use figment::providers::{Env, Serialized};
use figment::value::{Dict, Map};
use figment::{Error, Figment, Metadata, Profile, Provider, Source};
use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::server::backend::IoBackend;
use crate::telemetry::LogFormat;

/// Prefix of every environment variable we read.
pub(crate) const ENV_PREFIX: &str = "INFERGATE_";
const DEFAULTS_NAME: &str = "built-in default";
const ENV_NAME: &str = "environment variable";
const FLAG_NAME: &str = "command-line flag";
pub(crate) const SECRET_NAME: &str = "Docker secret";

/// Environment variables that select config files rather than set config values.
const ENV_NOT_CONFIG: [&str; 3] = ["profile", "config", "config_dir"];

/// Values set by command-line flags; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagOverrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--io-threads`
    pub io_threads: Option<usize>,
    /// `--io`
    pub io: Option<IoBackend>,
    /// `--compute-threads`
    pub compute_threads: Option<usize>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
    /// `--standby` (`Some(true)` when given)
    pub standby: Option<bool>,
    /// `--idle-exit`
    pub idle_exit_s: Option<u64>,
    /// `--strict` (`Some(true)` when given)
    pub strict_fd_limit: Option<bool>,
}

/// Which flag sets which key, for naming a flag in messages and the reference.
pub(crate) const FLAGS: [(&str, &str); 8] = [
    ("server.listen", "--listen"),
    ("server.io_threads", "--io-threads"),
    ("server.io", "--io"),
    ("server.standby", "--standby"),
    ("server.idle_exit_s", "--idle-exit"),
    ("server.strict_fd_limit", "--strict"),
    ("compute.threads", "--compute-threads"),
    ("log.format", "--log-format"),
];

/// A provider under our own name: the figment providers' names are generic, and their
/// key spelling (`SERVER.LISTEN`) is not what a user typed.
struct Named<P> {
    inner: P,
    metadata: Metadata,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        self.inner.data()
    }
}

/// The built-in defaults.
pub(crate) fn defaults() -> impl Provider {
    Named {
        inner: Serialized::defaults(Config::default()),
        metadata: Metadata::named(DEFAULTS_NAME),
    }
}

/// `INFERGATE_SECTION__KEY=value`; `*_FILE` variables belong to the secrets layer.
pub(crate) fn env() -> impl Provider {
    let inner = Env::prefixed(ENV_PREFIX)
        .filter(|k| {
            let k = k.as_str().to_ascii_lowercase();
            !k.ends_with("_file") && !ENV_NOT_CONFIG.contains(&k.as_str())
        })
        .split("__");
    Named {
        inner,
        metadata: Metadata::named(ENV_NAME).interpolater(|_, keys| env_var_name(keys)),
    }
}

/// The environment variable that sets `keys` (`["server", "listen"]` →
/// `INFERGATE_SERVER__LISTEN`).
pub(crate) fn env_var_name<K: AsRef<str>>(keys: &[K]) -> String {
    let joined: Vec<String> = keys
        .iter()
        .map(|k| k.as_ref().to_ascii_uppercase())
        .collect();
    format!("{ENV_PREFIX}{}", joined.join("__"))
}

/// The flags layer: the top of the stack.
pub(crate) fn flags(flags: &FlagOverrides) -> impl Provider {
    #[derive(Serialize)]
    struct Server {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<SocketAddr>,
        #[serde(skip_serializing_if = "Option::is_none")]
        io_threads: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        io: Option<IoBackend>,
        #[serde(skip_serializing_if = "Option::is_none")]
        standby: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        idle_exit_s: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        strict_fd_limit: Option<bool>,
    }
    #[derive(Serialize)]
    struct Compute {
        #[serde(skip_serializing_if = "Option::is_none")]
        threads: Option<usize>,
    }
    #[derive(Serialize)]
    struct Log {
        #[serde(skip_serializing_if = "Option::is_none")]
        format: Option<LogFormat>,
    }
    #[derive(Serialize)]
    struct Layer {
        server: Server,
        compute: Compute,
        log: Log,
    }
    let layer = Layer {
        server: Server {
            listen: flags.listen,
            io_threads: flags.io_threads,
            io: flags.io,
            standby: flags.standby,
            idle_exit_s: flags.idle_exit_s,
            strict_fd_limit: flags.strict_fd_limit,
        },
        compute: Compute {
            threads: flags.compute_threads,
        },
        log: Log {
            format: flags.log_format,
        },
    };
    Named {
        inner: Serialized::defaults(layer),
        metadata: Metadata::named(FLAG_NAME).interpolater(|_, keys| flag_name(&keys.join("."))),
    }
}

fn flag_name(key: &str) -> String {
    FLAGS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or_else(|| key.to_owned(), |(_, flag)| (*flag).to_owned())
}

/// Where a value with this metadata at `path` came from, in the user's own terms.
pub(crate) fn describe(metadata: Option<&Metadata>, path: &[String]) -> String {
    let key = path.join(".");
    let Some(md) = metadata else {
        return "an unknown source".to_owned();
    };
    match (md.name.as_ref(), &md.source) {
        (ENV_NAME, _) => format!("environment variable {}", env_var_name(path)),
        (FLAG_NAME, _) => format!("command-line flag {}", flag_name(&key)),
        (SECRET_NAME, Some(Source::File(file))) => {
            format!("Docker secret file {}", file.display())
        }
        (_, Some(Source::File(file))) if key.is_empty() => file.display().to_string(),
        (_, Some(Source::File(file))) => format!("{}, key `{key}`", file.display()),
        (name, _) => name.to_owned(),
    }
}

/// The source of the value at `key` in `figment`.
pub(crate) fn describe_key(figment: &Figment, key: &str) -> String {
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    describe(figment.find_metadata(key), &path)
}

/// One figment error as a report naming its source.
pub(crate) fn describe_error(e: &Error) -> ConfigError {
    ConfigError {
        key: e.path.join("."),
        message: e.kind.to_string(),
        source: describe(e.metadata.as_ref(), &e.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_the_literal_variables() {
        assert_eq!(
            env_var_name(&["server", "max_body_bytes"]),
            "INFERGATE_SERVER__MAX_BODY_BYTES"
        );
        assert_eq!(flag_name("server.listen"), "--listen");
        assert_eq!(flag_name("server.idle_exit_s"), "--idle-exit");
    }
}
