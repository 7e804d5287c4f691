//! The first stage of every request: whether it reaches its handler at all. A head past
//! the limits is refused before anything is looked at (no key checked, no token taken);
//! then who is asking, from where, against the scope the route needs (protected mode
//! judges the client a trusted proxy names, not the proxy); then the caller's rate limit.

use std::net::IpAddr;
use std::sync::Arc;

use http::Request;

use crate::auth::{Caller, Scope};
use crate::http::error::ApiError;
use crate::http::pages;
use crate::http::route::RouteDef;
use crate::http::{AmbiguousFraming, ClientCert};
use crate::rate_limit::{Client, Verdict};
use crate::state::Serving;

/// What admission found.
pub struct Admission {
    /// The name of the caller's API key (or client certificate), for logs and log rows.
    pub key: Option<Arc<str>>,
    /// The client's address (as `rate_limit.trusted_proxies` has it); `None` on the check
    /// socket.
    pub client_addr: Option<IpAddr>,
    /// The caller's rate limit, when one applies: its headers go on the answer.
    pub verdict: Option<Verdict>,
    /// Why the request is answered without its handler, if it is.
    pub refused: Option<ApiError>,
}

/// Admits (or refuses) a request on `route` from `peer` (`None`: the check socket).
pub fn admit<B>(
    serving: &Serving,
    req: &Request<B>,
    route: &RouteDef,
    peer: Option<IpAddr>,
) -> Admission {
    let scope = pages::scope(serving.pages, route);
    let client_addr = peer.map(|p| serving.rate_limits.client_addr(p, req.headers()));
    let caller = caller(serving, req, scope, client_addr);
    let key = caller.as_ref().ok().and_then(Caller::key_name).cloned();
    let verdict = match &caller {
        Ok(caller) if scope.is_some() => rate_limit(serving, caller, client_addr),
        _ => None,
    };
    let refused = match (caller, &verdict) {
        (Err(refused), _) => Some(refused),
        (
            Ok(_),
            Some(Verdict {
                retry_after_s: Some(retry_after_s),
                ..
            }),
        ) => Some(ApiError::RateLimited {
            retry_after_s: *retry_after_s,
        }),
        (Ok(_), _) => None,
    };
    Admission {
        key,
        client_addr,
        verdict,
        refused,
    }
}

/// Who is asking: the check socket (no client address) is trusted, since only who can
/// open its file reaches it; a verified client certificate is an admin (no key is looked
/// at); anyone else shows a key with the route's `scope` when keys are on, and without keys
/// reaches an admin route only from where protected mode admits `client`.
fn caller<B>(
    serving: &Serving,
    req: &Request<B>,
    scope: Option<Scope>,
    client: Option<IpAddr>,
) -> Result<Caller, ApiError> {
    if let Some(refused) = refuse_head(serving, req) {
        return Err(refused);
    }
    let Some(client) = client else {
        return Ok(Caller::Local);
    };
    match req.extensions().get::<ClientCert>() {
        Some(ClientCert(name)) => Ok(Caller::Cert(Arc::clone(name))),
        None => serving
            .auth
            .authorize(req.headers(), scope, client)
            .map_err(ApiError::from),
    }
}

/// A request head refused before routing: one framed two ways (a smuggling attempt), or
/// more header fields than `http.max_headers` (hyper enforces the count itself on
/// HTTP/1.1; on HTTP/2 only their bytes are bounded).
fn refuse_head<B>(serving: &Serving, req: &Request<B>) -> Option<ApiError> {
    if req.extensions().get::<AmbiguousFraming>().is_some() {
        return Some(ApiError::AmbiguousFraming);
    }
    (req.headers().len() > serving.limits.max_headers).then_some(ApiError::TooManyHeaders {
        limit: serving.limits.max_headers,
    })
}

/// The caller's rate limit verdict: its key's bucket, or without a key its address's; the
/// check socket's requests (no address) are not limited.
fn rate_limit(serving: &Serving, caller: &Caller, client: Option<IpAddr>) -> Option<Verdict> {
    let limits = &serving.rate_limits;
    if !limits.is_on() {
        return None;
    }
    match caller {
        Caller::Key(name) | Caller::Cert(name) => limits.check(Client::Key(Arc::clone(name))),
        Caller::Anonymous => limits.check(Client::Addr(client?)),
        Caller::Local => None,
    }
}
