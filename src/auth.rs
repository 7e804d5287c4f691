//! Who is calling, and may they: API keys from a file, checked before a request's body is
//! read. The limits/auth step of the request path, between the router and the decoding.
//!
//! Without a key file the gateway is open (the embedded default; one WARN at start), but in
//! [`protected`] mode: the routes that need the `admin` scope answer only to clients on
//! this machine. With one, every route but the health and readiness routes and
//! `/openapi.json` needs a key: `Authorization: Bearer KEY` or `X-API-Key: KEY`. `POST
//! /predict` needs the `predict` scope; `/metrics`, `/stats` and anything else `admin`
//! (which implies `predict`). The file is re-read on SIGHUP and whenever its content
//! changes ([`reload`]); a file that turns unreadable or invalid leaves the keys in force
//! as they were.

pub mod keys;
pub mod protected;
pub mod reload;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use http::HeaderMap;
use http::header::AUTHORIZATION;

pub use crate::auth::keys::{KeySet, Scope, Scopes};
pub use crate::auth::protected::{LocalNet, ProtectedMode, ProtectedSettings};
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
    /// An admin route, asked from off this machine while no key file is in force.
    #[error(
        "with no API keys configured (protected mode), this admin route answers only to \
         clients on the gateway's own machine; to reach it from elsewhere, add a key \
         (`infergate hash-key --name NAME --scopes admin`, its line in the key file \
         auth.keys_path) and send it, or set auth.protected_mode = false to open the admin \
         routes to anyone who can connect"
    )]
    Protected,
}

impl AuthError {
    /// The label of `infergate_auth_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Forbidden { .. } => "forbidden",
            Self::Protected => "protected",
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
    /// Who reaches the admin routes while `keys` is `None`.
    protected: ProtectedMode,
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
    /// No keys, `protected` deciding who reaches the admin routes.
    pub fn open(protected: ProtectedMode) -> Self {
        Self {
            keys: RwLock::new(None),
            path: None,
            protected,
        }
    }

    /// Keys from `path`, checked at start: a file that does not exist leaves the gateway
    /// open but `protected` (and is watched: keys written there later are taken up); one
    /// that exists must be readable and valid.
    pub fn from_file(path: &Path, protected: ProtectedMode) -> Result<Self, KeyFileLoadError> {
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
            protected,
        })
    }

    /// Protected mode, which applies while no key file is in force.
    pub fn protected(&self) -> &ProtectedMode {
        &self.protected
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

    /// Checks the key `headers` present for `needed` (`None`: an open route), from
    /// `client` (the peer, or the client a trusted proxy names). Without keys anyone may
    /// call, but an `admin` route only from where protected mode admits.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        needed: Option<Scope>,
        client: IpAddr,
    ) -> Result<Caller, AuthError> {
        let Some(needed) = needed else {
            return Ok(Caller::Anonymous);
        };
        // Checked under the read lock (no await in it) rather than on a clone of the Arc:
        // a clone is an atomic add and subtract, shared by every I/O thread, per request.
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let outcome = match keys.as_deref() {
            Some(keys) => check(keys, headers, needed),
            None if needed == Scope::Admin && !self.protected.admits(client) => {
                Err(AuthError::Protected)
            }
            None => return Ok(Caller::Anonymous),
        };
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

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn protected() -> ProtectedMode {
        ProtectedMode::new(&ProtectedSettings {
            enabled: true,
            local_networks: Vec::new(),
        })
    }

    fn auth() -> Auth {
        let auth = Auth::open(protected());
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
        let open = Auth::open(ProtectedMode::off());
        assert!(!open.is_enforced());
        assert_eq!(
            open.authorize(&HeaderMap::new(), Some(Scope::Admin), AWAY),
            Ok(Caller::Anonymous)
        );
        let auth = auth();
        assert!(auth.is_enforced());
        assert_eq!(
            auth.authorize(&HeaderMap::new(), None, AWAY),
            Ok(Caller::Anonymous)
        );
    }

    #[test]
    fn protected_without_keys_admin_only_from_here() {
        let open = Auth::open(protected());
        let none = HeaderMap::new();
        assert_eq!(
            open.authorize(&none, Some(Scope::Admin), HERE),
            Ok(Caller::Anonymous)
        );
        assert_eq!(
            open.authorize(&none, Some(Scope::Admin), AWAY),
            Err(AuthError::Protected)
        );
        // A key presented changes nothing while there are none to check it against.
        let ops = with("x-api-key", "ig_ops");
        assert_eq!(
            open.authorize(&ops, Some(Scope::Admin), AWAY),
            Err(AuthError::Protected)
        );
        assert_eq!(
            open.authorize(&none, Some(Scope::Predict), AWAY),
            Ok(Caller::Anonymous)
        );
        assert_eq!(open.authorize(&none, None, AWAY), Ok(Caller::Anonymous));
        // Keys in force: scopes decide, wherever the caller is.
        let keyed = auth();
        assert_eq!(
            keyed.authorize(&ops, Some(Scope::Admin), AWAY),
            Ok(Caller::Key(Arc::from("ops")))
        );
        assert_eq!(
            keyed.authorize(&none, Some(Scope::Admin), HERE),
            Err(AuthError::Missing)
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
            assert_eq!(
                auth.authorize(&h, Some(Scope::Predict), AWAY),
                Ok(app.clone())
            );
        }
        let h = with("authorization", "Bearer ig_app");
        assert!(matches!(
            auth.authorize(&h, Some(Scope::Admin), AWAY),
            Err(AuthError::Forbidden {
                needed: "admin",
                ..
            })
        ));
        let ops = with("x-api-key", "ig_ops");
        assert!(auth.authorize(&ops, Some(Scope::Predict), AWAY).is_ok());
        assert!(auth.authorize(&ops, Some(Scope::Admin), AWAY).is_ok());
    }

    #[test]
    fn missing_wrong_and_malformed_keys() {
        let auth = auth();
        let needed = Some(Scope::Predict);
        assert_eq!(
            auth.authorize(&HeaderMap::new(), needed, AWAY),
            Err(AuthError::Missing)
        );
        for h in [
            with("authorization", "Bearer ig_nope"),
            with("authorization", "Basic aWc6YXBw"),
            with("authorization", "Bearer "),
            with("authorization", "ig_app"),
            with("x-api-key", " "),
        ] {
            assert_eq!(
                auth.authorize(&h, needed, AWAY),
                Err(AuthError::Invalid),
                "{h:?}"
            );
        }
    }

    #[test]
    fn a_replaced_set_revokes_at_once() {
        let auth = auth();
        let h = with("x-api-key", "ig_app");
        assert!(auth.authorize(&h, Some(Scope::Predict), AWAY).is_ok());
        auth.replace(KeySet::default());
        assert_eq!(
            auth.authorize(&h, Some(Scope::Predict), AWAY),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_missing_file_is_open_and_a_bad_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api_keys");
        let load = |path: &Path| Auth::from_file(path, protected());
        assert!(!load(&path).unwrap().is_enforced());
        std::fs::write(&path, "nonsense\n").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        std::fs::write(&path, "# every key revoked\n").unwrap();
        assert!(load(&path).unwrap().is_enforced());
    }
}
