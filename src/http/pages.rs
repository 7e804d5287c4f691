//! Pages for people: the console at `/` (the gateway at a glance, and a form to try a
//! model) and the interactive API docs at `/docs` (Swagger UI over `/openapi.json`), with
//! their assets under `/ui/`, all compiled into the binary ([`assets`]); and the console's
//! numbers, `GET /console/status` ([`status`]).
//!
//! A page is plain HTML, CSS and JavaScript from this origin only: every answer on a page
//! route carries a Content-Security-Policy that allows no inline script and no other host
//! ([`security_headers`], added by `http::finish` whatever the answer), so the pages work
//! on a machine with no internet and a key typed into them can only go back to the gateway.
//! Who may open them is `ui.scope`'s ([`PagesSettings`]); the API calls they make need the
//! keys those routes need.

pub mod assets;
pub mod status;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue,
    IF_NONE_MATCH, VARY,
};
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::auth::Scope;
use crate::http::error::ApiError;
use crate::http::pages::assets::Asset;
use crate::http::route::{Call, Protocol, RouteDef};
use crate::http::{HttpResponse, UNKNOWN, json_response};
use crate::state::PagesSettings;

/// The row `route` when the pages are served; [`UNKNOWN`] for a page's row when they are
/// not.
pub fn route(settings: PagesSettings, route: &'static RouteDef) -> &'static RouteDef {
    if route.protocol == Protocol::Page && !settings.enabled {
        &UNKNOWN
    } else {
        route
    }
}

/// The scope a key needs on `route`: `ui.scope`'s on a page, the row's elsewhere.
pub fn scope(settings: PagesSettings, route: &RouteDef) -> Option<Scope> {
    if route.protocol == Protocol::Page {
        settings.scope
    } else {
        route.scope
    }
}

/// The policy every page answer carries. Scripts and styles from this origin's files only
/// (no inline script, no `eval`); images also from `data:` (Swagger UI's icons are data
/// URIs in its stylesheet) and `blob:` (the console's preview of a chosen image); fetches
/// to this origin only; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the headers every answer on a page route carries, refusals included.
pub fn security_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// `GET /`, `GET /docs` and `GET /ui/…`: the page or asset at the request's path, in the
/// best encoding the client takes; 304 when the client holds it already.
pub async fn page(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    let path = call.req.uri().path();
    let asset = assets::find(path).ok_or_else(|| ApiError::not_found(path))?;
    Ok(answer(asset, call.req.headers()))
}

/// `GET /console/status`: the console's numbers; unknown when the pages are off.
pub async fn status(call: Call<'_>) -> Result<HttpResponse, ApiError> {
    if !call.gateway.serving.pages.enabled {
        return Err(ApiError::not_found(call.route.path));
    }
    Ok(json_response(
        StatusCode::OK,
        &status::ConsoleStatus::of(call.gateway),
    ))
}

/// `asset` as the request's headers ask for it.
fn answer(asset: &'static Asset, request: &HeaderMap) -> HttpResponse {
    let encoding = asset.best_encoding(accepted(request));
    let etag = asset.etag(encoding);
    let fresh = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| matches_etag(v, etag));
    let mut response = if fresh {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(asset.body(encoding))));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        if let Some(name) = encoding.header() {
            r.headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static(name));
        }
        r
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, v);
    }
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(asset.caching.header()),
    );
    if asset.has_encodings() {
        headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// The encodings `Accept-Encoding` allows besides identity: `(gzip, brotli)`. A coding
/// with `q=0` is refused; `*` stands for any not named.
fn accepted(headers: &HeaderMap) -> (bool, bool) {
    let (mut gzip, mut brotli, mut any) = (None, None, None);
    for value in headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            let slot = match name.as_str() {
                "gzip" | "x-gzip" => &mut gzip,
                "br" => &mut brotli,
                "*" => &mut any,
                _ => continue,
            };
            *slot = Some(!refused);
        }
    }
    (
        gzip.or(any).unwrap_or(false),
        brotli.or(any).unwrap_or(false),
    )
}

/// Whether an `If-None-Match` value names `etag` (weak comparison, as RFC 9110 says for
/// that header) or is `*`.
fn matches_etag(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::pages::assets::Encoding;

    /// The encoding `asset` is sent in to a client that accepts `accept`.
    fn chosen(asset: &Asset, accept: &str) -> Encoding {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        asset.best_encoding(accepted(&h))
    }

    fn bundle() -> &'static Asset {
        assets::find(assets::SWAGGER_UI_BUNDLE).unwrap()
    }

    #[test]
    fn brotli_then_gzip_then_identity() {
        assert_eq!(
            chosen(bundle(), "gzip, deflate, br, zstd"),
            Encoding::Brotli
        );
        assert_eq!(chosen(bundle(), "gzip"), Encoding::Gzip);
        assert_eq!(chosen(bundle(), "br;q=0, gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(chosen(bundle(), "*"), Encoding::Brotli);
        assert_eq!(chosen(bundle(), "*, br;q=0"), Encoding::Gzip);
        assert_eq!(chosen(bundle(), "identity"), Encoding::Identity);
        // An asset with no compressed form is sent as it is, whatever is accepted.
        assert_eq!(chosen(assets::find("/").unwrap(), "br"), Encoding::Identity);
    }

    #[test]
    fn pages_take_ui_scope_and_are_unknown_when_off() {
        let (page, stats) = (
            crate::http::route_of("/docs"),
            crate::http::route_of("/stats"),
        );
        let admin = PagesSettings {
            enabled: true,
            scope: Some(Scope::Admin),
        };
        let off = PagesSettings {
            enabled: false,
            scope: None,
        };
        assert_eq!(scope(admin, page), Some(Scope::Admin));
        assert_eq!(scope(off, page), None);
        // Only pages: any other route keeps its row's scope.
        assert_eq!(scope(off, stats), Some(Scope::Admin));
        assert!(std::ptr::eq(route(off, page), &UNKNOWN));
        assert!(std::ptr::eq(route(admin, page), page));
        assert!(std::ptr::eq(route(off, stats), stats));
        for path in ["/", "/docs/", "/ui/console.js"] {
            assert_eq!(
                crate::http::route_of(path).protocol,
                Protocol::Page,
                "{path}"
            );
        }
    }

    #[test]
    fn etags_match_weakly_and_by_list() {
        assert!(matches_etag("\"abc\"", "\"abc\""));
        assert!(matches_etag("W/\"abc\"", "\"abc\""));
        assert!(matches_etag("\"x\", \"abc\"", "\"abc\""));
        assert!(matches_etag("*", "\"abc\""));
        assert!(!matches_etag("\"abcd\"", "\"abc\""));
    }

    #[test]
    fn a_held_asset_is_not_sent_again() {
        let asset = bundle();
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let first = answer(asset, &h);
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(first.headers()[VARY], "accept-encoding");
        let etag = first.headers()[ETAG].clone();
        h.insert(IF_NONE_MATCH, etag.clone());
        let again = answer(asset, &h);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[ETAG], etag);
        // The gzip tag does not stand for the brotli body.
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(answer(asset, &h).status(), StatusCode::OK);
    }
}
