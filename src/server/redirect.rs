//! The redirect listener (`[redirect]`): plain HTTP/1.1 on its own thread that answers
//! `GET /health` as the public listener does and sends everything else to HTTPS — 301 for
//! GET and HEAD, 308 for other methods (so a POST is repeated as a POST) — at the same
//! host and path, as nginx's `return 301 https://$host$request_uri`. Nothing else is
//! served in the clear: no prediction, no key, no metrics.
//!
//! It stops accepting when the drain begins, so a new instance sharing its port
//! (`SO_REUSEPORT`) takes the new connections.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::background;
use crate::server::accept::{self, Caps};

use crate::http::error::ApiError;
use crate::http::{HttpResponse, json_response};
use crate::readiness::Health;
use crate::server::listener::{BindError, bind_group};
use crate::state::Gateway;

/// Connections the redirect listener keeps open at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 1024;

/// Why the redirect listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// The address could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// Binding gave no socket (never expected of a group of one).
    #[error("binding the redirect listener gave no socket")]
    NoSocket,
    /// Its thread could not start.
    #[error(transparent)]
    Spawn(#[from] background::SpawnError),
}

/// What the redirect listener needs.
pub struct RedirectSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The HTTPS port the redirects name (443 is left out of the URL).
    pub https_port: u16,
    /// Longest a request head may take.
    pub header_read_timeout: Duration,
    /// For `/health` and the drain.
    pub gateway: Arc<Gateway>,
}

/// Binds `settings.listen` and serves it on a thread of its own until the drain; returns
/// the bound address.
pub fn start(settings: RedirectSettings) -> Result<SocketAddr, RedirectError> {
    let (addr, mut listeners) = bind_group(settings.listen, 1, 128)?;
    let listener = listeners.pop().ok_or(RedirectError::NoSocket)?;
    background::spawn("infergate-redirect", move || serve(listener, settings))?;
    Ok(addr)
}

/// Accepts until the drain begins, then stops: closing the socket lets a new instance on
/// the same port take the clients.
async fn serve(listener: StdTcpListener, settings: RedirectSettings) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "the redirect listener stopped");
            return;
        }
    };
    let settings = Arc::new(settings);
    let stop = settings.gateway.lifecycle.shutdown.drain_started();
    accept::serve(
        listener,
        Caps::own(MAX_CONNECTIONS),
        stop,
        |stream, _peer| serve_conn(stream, Arc::clone(&settings)),
    )
    .await;
}

/// One plain-HTTP connection.
async fn serve_conn(stream: tokio::net::TcpStream, settings: Arc<RedirectSettings>) {
    let service = service_fn(|req: Request<Incoming>| {
        let answer = answer(&settings, &req);
        async move { Ok::<_, Infallible>(answer) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    // Bounded: a client gets the head-read timeout per request, and a redirect is
    // answered at once.
    let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
}

/// The answer to one plain-HTTP request.
fn answer<B>(settings: &RedirectSettings, req: &Request<B>) -> HttpResponse {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if get && req.uri().path() == "/health" {
        return json_response(StatusCode::OK, &Health::of(&settings.gateway));
    }
    let Some(host) = req
        .headers()
        .get(HOST)
        .and_then(|h| host_name(h.as_bytes()))
    else {
        return ApiError::InvalidHost.into_response();
    };
    let port = match settings.https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let Ok(location) = HeaderValue::from_str(&format!("https://{host}{port}{target}")) else {
        return ApiError::InvalidHost.into_response();
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = if get {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    response.headers_mut().insert(LOCATION, location);
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// The host of a `Host` header, without its port: a DNS name or IPv4 address (letters,
/// digits, `-`, `.`), or a bracketed IPv6 address. Anything else could make the redirect
/// point somewhere the client did not ask for (or split the header), so it is refused.
fn host_name(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let host = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        let (v6, after) = (&rest[..end], &rest[end + 1..]);
        if !v6
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            || !(after.is_empty() || after.strip_prefix(':').is_some_and(port_ok))
        {
            return None;
        }
        &value[..end + 2]
    } else {
        let (host, port) = match value.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        if port.is_some_and(|p| !port_ok(p)) {
            return None;
        }
        host
    };
    let plain = host.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    (!host.is_empty() && host.len() <= 253 && plain).then_some(host)
}

/// A port's digits (1 to 5 of them).
fn port_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_taken_without_their_port_and_checked() {
        assert_eq!(host_name(b"example.com"), Some("example.com"));
        assert_eq!(host_name(b"example.com:8080"), Some("example.com"));
        assert_eq!(host_name(b"10.0.0.1:80"), Some("10.0.0.1"));
        assert_eq!(host_name(b"[::1]:8080"), Some("[::1]"));
        assert_eq!(host_name(b"[2001:db8::1]"), Some("[2001:db8::1]"));
        for bad in [
            &b""[..],
            b"evil.com/path",
            b"a b",
            b"user@evil.com",
            b"example.com:http",
            b"[::1",
            b"[zz::1]",
            b"example.com:123456",
            b"\xff",
        ] {
            assert_eq!(host_name(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
