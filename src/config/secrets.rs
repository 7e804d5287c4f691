//! Docker secrets: one figment provider per secret file, each carrying its path as
//! metadata, and the `Secret` type that never shows its value.
//!
//! Two ways a file becomes a value: a known name in the secrets directory (`tls_cert`,
//! `tls_key`), or `INFERGATE_<KEY>_FILE=/path` for any key (`INFERGATE_TLS__KEY_FILE`).
//! One trailing newline is stripped, since `echo x > file` and editors add one. Where the
//! directory is, is the `[secrets]` section.

use std::fmt;
use std::path::{Path, PathBuf};

use documented::{Documented, DocumentedFields};
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::layers::{ENV_PREFIX, SECRET_NAME};

/// Where Docker secrets are read from.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsSection {
    /// Directory holding Docker secret files: `tls_cert` and `tls_key` (PEM),
    /// `redis_url`, `redis_password`, `database_url`, `database_password`, and `api_keys`
    /// (see `auth.keys_path`).
    pub dir: PathBuf,
}

impl Default for SecretsSection {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/run/secrets"),
        }
    }
}

/// Secret file names looked for in the secrets directory, and the key each one sets.
pub const KNOWN_SECRETS: [(&str, &str); 6] = [
    ("tls_cert", "tls.cert"),
    ("tls_key", "tls.key"),
    ("redis_url", "redis.url"),
    ("redis_password", "redis.password"),
    ("database_url", "database.url"),
    ("database_password", "database.password"),
];

/// Keys whose value is text as written: a secret for them is never parsed as a number,
/// a boolean or an array (a password `123456` stays a string).
const TEXT_KEYS: [&str; 15] = [
    "tls.cert",
    "tls.key",
    "redis.url",
    "redis.password",
    "database.url",
    "database.password",
    "database.tls_ca_path",
    "prediction_log.spool_dir",
    "tls.cert_path",
    "tls.key_path",
    "model.path",
    "model.manifest_path",
    "log.level",
    "secrets.dir",
    "auth.keys_path",
];

/// A string that `Debug`, `Display` and serialization show as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// What a secret shows instead of its value.
pub const REDACTED: &str = "[redacted]";

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; call it only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    /// Accepts a string, or a number or boolean (an environment variable `123456` is
    /// parsed as a number before it gets here) taken as its text.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One secret file providing one config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Dotted config key it sets.
    pub key: String,
    /// The file.
    pub path: PathBuf,
}

impl Provider for SecretFile {
    fn metadata(&self) -> Metadata {
        Metadata::from(SECRET_NAME, self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let raw = std::fs::read_to_string(&self.path).map_err(|e| {
            Error::from(format!(
                "cannot read secret file {} for `{}`: {e}",
                self.path.display(),
                self.key
            ))
        })?;
        let text = strip_one_newline(&raw);
        let value = match TEXT_KEYS.contains(&self.key.as_str()) {
            true => Value::from(text.to_owned()),
            // Numbers, booleans and the like, parsed the way environment variables are.
            false => text
                .parse::<Value>()
                .unwrap_or_else(|_| Value::from(text.to_owned())),
        };
        let dict = match figment::util::nest(&self.key, value) {
            Value::Dict(_, dict) => dict,
            _ => Dict::new(),
        };
        Ok(Profile::Default.collect(dict))
    }
}

fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// The secret files to layer, in order: known names found in `dir`, then every
/// `INFERGATE_<KEY>_FILE` variable (sorted, so the order does not depend on the
/// environment's).
pub fn discover(dir: &Path) -> Vec<SecretFile> {
    let mut found: Vec<SecretFile> = KNOWN_SECRETS
        .iter()
        .map(|(name, key)| SecretFile {
            key: (*key).to_owned(),
            path: dir.join(name),
        })
        .filter(|s| s.path.is_file())
        .collect();
    let mut from_env: Vec<SecretFile> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            let key = file_var_key(&name)?;
            Some(SecretFile {
                key,
                path: PathBuf::from(value),
            })
        })
        .collect();
    from_env.sort_by(|a, b| a.key.cmp(&b.key));
    found.extend(from_env);
    found
}

/// `INFERGATE_TLS__KEY_FILE` → `tls.key`.
fn file_var_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?.strip_suffix("_FILE")?;
    if rest.is_empty() {
        return None;
    }
    Some(rest.to_ascii_lowercase().replace("__", "."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn one_trailing_newline_is_stripped() {
        assert_eq!(strip_one_newline("a\n"), "a");
        assert_eq!(strip_one_newline("a\r\n"), "a");
        assert_eq!(strip_one_newline("a\n\n"), "a\n");
        assert_eq!(strip_one_newline("a"), "a");
    }

    #[test]
    fn file_variables_map_to_keys() {
        assert_eq!(
            file_var_key("INFERGATE_TLS__KEY_FILE").as_deref(),
            Some("tls.key")
        );
        assert_eq!(file_var_key("INFERGATE_FILE"), None);
        assert_eq!(file_var_key("OTHER_TLS__KEY_FILE"), None);
    }

    #[test]
    fn text_keys_stay_text_and_others_are_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "123456\n").unwrap();
        let figment = figment::Figment::from(SecretFile {
            key: "tls.key".to_owned(),
            path: path.clone(),
        })
        .merge(SecretFile {
            key: "server.backlog".to_owned(),
            path,
        });
        assert_eq!(
            figment.extract_inner::<String>("tls.key").unwrap(),
            "123456"
        );
        assert_eq!(
            figment.extract_inner::<u32>("server.backlog").unwrap(),
            123456
        );
    }
}
