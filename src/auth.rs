//! Who is calling, and may they: API keys from a file, checked before a request's body is
//! read. The limits/auth step of the request path, between the router and the decoding.
//!
//! Without a key file the gateway is open (the embedded default; one WARN at start). With
//! one, every route but the health and readiness routes and `/openapi.json` needs a key:
//! `Authorization: Bearer KEY` or `X-API-Key: KEY`. `POST /predict` needs the `predict` scope; `/metrics`, `/stats` and
//! anything else `admin` (which implies `predict`). The file is re-read on SIGHUP and
//! whenever its content changes ([`reload`]); a file that turns unreadable or invalid
//! leaves the keys in force as they were.

pub mod keys;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use http::HeaderMap;
use http::header::AUTHORIZATION;

pub use crate::auth::keys::{KeySet, Scope, Scopes};
use crate::metrics::{API_KEYS, AUTH_REFUSED_TOTAL};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No key presented where one is needed.
    #[error("this route needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")]
    Missing,
    /// A key that is not (or no longer) configured, or a malformed `Authorization`.
    #[error("the API key is not valid")]
    Invalid,
    /// A valid key without the scope the route needs.
    #[error("the API key {key:?} lacks the {needed:?} scope this route needs")]
    Forbidden {
        /// The key's name.
        key: Arc<str>,
        /// The scope it lacks.
        needed: &'static str,
    },
}

impl AuthError {
    /// The label of `infergate_auth_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Forbidden { .. } => "forbidden",
        }
    }
}

/// Who a request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No key needed (an open gateway, or an open route) and none checked.
    Anonymous,
    /// The check socket: whoever can open its file is trusted as `admin`.
    Local,
    /// A configured key, by name.
    Key(Arc<str>),
    /// A client certificate issued by `tls.client_ca_path` (mTLS): `admin`, by its name
    /// (`cert:` and its fingerprint).
    Cert(Arc<str>),
}

impl Caller {
    /// The key's name, for logs, spans and log rows.
    pub fn key_name(&self) -> Option<&Arc<str>> {
        match self {
            Self::Key(name) | Self::Cert(name) => Some(name),
            Self::Anonymous | Self::Local => None,
        }
    }
}

/// The keys in force and where they come from.
#[derive(Debug)]
pub struct Auth {
    /// `None`: open, no key file.
    keys: RwLock<Option<Arc<KeySet>>>,
    path: Option<PathBuf>,
}

/// The key file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileLoadError {
    /// It exists but cannot be read.
    #[error("cannot read the API key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// It is not a key file.
    #[error("the API key file {} is invalid: {error}", path.display())]
    Parse {
        path: PathBuf,
        error: keys::KeyFileError,
    },
}

impl Auth {
    /// No keys: every route open.
    pub fn open() -> Self {
        Self {
            keys: RwLock::new(None),
            path: None,
        }
    }

    /// Keys from `path`, checked at start: a file that does not exist leaves the gateway
    /// open (and is watched: keys written there later are taken up); one that exists must
    /// be readable and valid.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileLoadError> {
        let keys = match std::fs::read_to_string(path) {
            Ok(text) => Some(Arc::new(KeySet::parse(&text).map_err(|error| {
                KeyFileLoadError::Parse {
                    path: path.to_owned(),
                    error,
                }
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(KeyFileLoadError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        metrics::gauge!(API_KEYS).set(keys.as_ref().map_or(0.0, |k| k.len() as f64));
        Ok(Self {
            keys: RwLock::new(keys),
            path: Some(path.to_owned()),
        })
    }

    /// The key file watched, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The keys in force; `None` when open.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `keys` in force for every request that starts from now on.
    pub fn replace(&self, keys: KeySet) {
        metrics::gauge!(API_KEYS).set(keys.len() as f64);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
    }

    /// Whether requests need a key.
    pub fn is_enforced(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Checks the key `headers` present for `needed` (`None`: an open route).
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        needed: Option<Scope>,
    ) -> Result<Caller, AuthError> {
        let Some(needed) = needed else {
            return Ok(Caller::Anonymous);
        };
        // Checked under the read lock (no await in it) rather than on a clone of the Arc:
        // a clone is an atomic add and subtract, shared by every I/O thread, per request.
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let Some(keys) = keys.as_deref() else {
            return Ok(Caller::Anonymous);
        };
        let outcome = check(keys, headers, needed);
        if let Err(e) = &outcome {
            metrics::counter!(AUTH_REFUSED_TOTAL, "reason" => e.reason()).increment(1);
        }
        outcome
    }
}

fn check(keys: &KeySet, headers: &HeaderMap, needed: Scope) -> Result<Caller, AuthError> {
    let presented = presented_key(headers)?;
    let entry = keys.find(presented).ok_or(AuthError::Invalid)?;
    if entry.scopes.allow(needed) {
        Ok(Caller::Key(Arc::clone(&entry.name)))
    } else {
        Err(AuthError::Forbidden {
            key: Arc::clone(&entry.name),
            needed: needed.as_str(),
        })
    }
}

/// The key a request presents: `Authorization: Bearer KEY` (the scheme in any case), else
/// `X-API-Key: KEY`.
fn presented_key(headers: &HeaderMap) -> Result<&[u8], AuthError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.as_bytes();
        let scheme = b"bearer ";
        return match value.get(..scheme.len()) {
            Some(s) if s.eq_ignore_ascii_case(scheme) => {
                let key = value[scheme.len()..].trim_ascii();
                if key.is_empty() {
                    Err(AuthError::Invalid)
                } else {
                    Ok(key)
                }
            }
            _ => Err(AuthError::Invalid),
        };
    }
    match headers.get("x-api-key") {
        Some(v) if !v.as_bytes().trim_ascii().is_empty() => Ok(v.as_bytes().trim_ascii()),
        Some(_) => Err(AuthError::Invalid),
        None => Err(AuthError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth() -> Auth {
        let auth = Auth::open();
        let text = [
            keys::line("app", Scopes::of(&[Scope::Predict]), "ig_app"),
            keys::line("ops", Scopes::of(&[Scope::Admin]), "ig_ops"),
        ]
        .join("\n");
        auth.replace(KeySet::parse(&text).unwrap());
        auth
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn open_until_keys_are_set() {
        let open = Auth::open();
        assert!(!open.is_enforced());
        assert_eq!(
            open.authorize(&HeaderMap::new(), Some(Scope::Admin)),
            Ok(Caller::Anonymous)
        );
        let auth = auth();
        assert!(auth.is_enforced());
        assert_eq!(
            auth.authorize(&HeaderMap::new(), None),
            Ok(Caller::Anonymous)
        );
    }

    #[test]
    fn bearer_or_x_api_key_with_the_right_scope() {
        let auth = auth();
        let app = Caller::Key(Arc::from("app"));
        for h in [
            with("authorization", "Bearer ig_app"),
            with("authorization", "bearer  ig_app "),
            with("x-api-key", "ig_app"),
        ] {
            assert_eq!(auth.authorize(&h, Some(Scope::Predict)), Ok(app.clone()));
        }
        let h = with("authorization", "Bearer ig_app");
        assert!(matches!(
            auth.authorize(&h, Some(Scope::Admin)),
            Err(AuthError::Forbidden {
                needed: "admin",
                ..
            })
        ));
        let ops = with("x-api-key", "ig_ops");
        assert!(auth.authorize(&ops, Some(Scope::Predict)).is_ok());
        assert!(auth.authorize(&ops, Some(Scope::Admin)).is_ok());
    }

    #[test]
    fn missing_wrong_and_malformed_keys() {
        let auth = auth();
        let needed = Some(Scope::Predict);
        assert_eq!(
            auth.authorize(&HeaderMap::new(), needed),
            Err(AuthError::Missing)
        );
        for h in [
            with("authorization", "Bearer ig_nope"),
            with("authorization", "Basic aWc6YXBw"),
            with("authorization", "Bearer "),
            with("authorization", "ig_app"),
            with("x-api-key", " "),
        ] {
            assert_eq!(auth.authorize(&h, needed), Err(AuthError::Invalid), "{h:?}");
        }
    }

    #[test]
    fn a_replaced_set_revokes_at_once() {
        let auth = auth();
        let h = with("x-api-key", "ig_app");
        assert!(auth.authorize(&h, Some(Scope::Predict)).is_ok());
        auth.replace(KeySet::default());
        assert_eq!(
            auth.authorize(&h, Some(Scope::Predict)),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_missing_file_is_open_and_a_bad_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api_keys");
        assert!(!Auth::from_file(&path).unwrap().is_enforced());
        std::fs::write(&path, "nonsense\n").unwrap();
        let err = Auth::from_file(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        std::fs::write(&path, "# every key revoked\n").unwrap();
        assert!(Auth::from_file(&path).unwrap().is_enforced());
    }
}
