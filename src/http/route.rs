//! What a route is: its row in the route table (`http::ROUTES`: path, methods, scope,
//! protocol, metric label, handler), how a path matches it, and what its handler is given.
//! Handlers import this, never the table, which names them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Method, Request, Response};
use http_body_util::Either;

use crate::auth::Scope;
use crate::http::body::RequestBody;
use crate::http::error::ApiError;
use crate::http::{HttpResponse, ResponseBody, Timing};
use crate::predict::RequestOptions;
use crate::state::Gateway;

/// One route: where it is, what it takes, who may call it, how it answers.
pub struct RouteDef {
    /// The path, `{name}` standing for one non-empty segment.
    pub path: &'static str,
    /// How [`RouteDef::path`] is matched.
    pub shape: Shape,
    /// The methods it takes.
    pub methods: Methods,
    /// The API key scope it needs when keys are on; `None`: open to anyone.
    pub scope: Option<Scope>,
    /// The protocol it speaks, and so the shape of its refusals.
    pub protocol: Protocol,
    /// Its `route` label in metrics, logs and traces (bounded: several rows may share one).
    pub label: &'static str,
    /// Answers a request the router gave it.
    pub handler: Handler,
}

/// How a route's path is matched against a request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Segment by segment.
    Exact,
    /// As `Exact`, and also with a trailing `/`.
    OrSlash,
    /// As `Exact`, and also with `/versions/{version}` after `{model}` (the Open Inference
    /// Protocol's versioned paths).
    Versioned,
    /// Any path that starts with it.
    Prefix,
}

/// The methods a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    /// `GET` and `HEAD`.
    Read,
    /// `POST`.
    Post,
    /// Any: the unknown route, which answers 404 to all (and so never sends its `Allow`).
    Any,
}

impl Methods {
    /// The `Allow` header's value: the one list of the methods taken.
    pub const fn allow(self) -> &'static str {
        match self {
            Self::Read => "GET, HEAD",
            Self::Post => "POST",
            Self::Any => "GET, HEAD, POST",
        }
    }

    /// Whether `method` is one of them.
    pub fn allows(self, method: &Method) -> bool {
        self == Self::Any || self.allow().split(", ").any(|m| m == method.as_str())
    }
}

/// What a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The seed's API (and this document): our JSON error body.
    Seed,
    /// The Open Inference Protocol over REST: `{"error": "…"}`.
    Oip,
    /// Triton's model repository API: as the OIP.
    Repository,
    /// The OIP over gRPC: a `grpc-status`.
    Grpc,
    /// A page for people, or one of its files: our JSON error body, and the pages'
    /// security headers on every answer (`http::pages`). Its scope is `ui.scope`'s, not
    /// the row's.
    Page,
}

impl Protocol {
    /// Whether its refusals are the OIP's `{"error": "…"}`.
    pub fn oip_errors(self) -> bool {
        matches!(self, Self::Oip | Self::Repository)
    }
}

/// What a handler is given.
pub struct Call<'a> {
    pub gateway: &'a Arc<Gateway>,
    /// The row that matched.
    pub route: &'static RouteDef,
    pub req: Request<RequestBody>,
    pub meta: RequestOptions,
    pub timing: &'a mut Timing,
}

/// A handler's answer, in the making.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, ApiError>> + 'a>>;

/// A route's handler.
pub type Handler = for<'a> fn(Call<'a>) -> Answer<'a>;

/// A handler's answer as the service sends it: bytes (REST) or a gRPC body.
pub trait IntoAnswer {
    fn into_answer(self) -> Response<ResponseBody>;
}

impl IntoAnswer for HttpResponse {
    fn into_answer(self) -> Response<ResponseBody> {
        self.map(Either::Left)
    }
}

impl IntoAnswer for Response<tonic::body::Body> {
    fn into_answer(self) -> Response<ResponseBody> {
        self.map(Either::Right)
    }
}

/// The values a path gives a route's `{name}` segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params<'p> {
    /// `{model}`.
    pub model: Option<&'p str>,
    /// `{version}` (a versioned path).
    pub version: Option<&'p str>,
}

impl RouteDef {
    /// The path's `{model}` and `{version}` when it is this route's; `None` when it is not.
    pub fn params<'p>(&self, path: &'p str) -> Option<Params<'p>> {
        match self.shape {
            Shape::Prefix => path.starts_with(self.path).then(Params::default),
            Shape::OrSlash if path.len() == self.path.len() + 1 && path.ends_with('/') => {
                match_segments(self.path, &path[..path.len() - 1], false)
            }
            Shape::Exact | Shape::OrSlash => match_segments(self.path, path, false),
            Shape::Versioned => match_segments(self.path, path, true),
        }
    }

    /// The `{model}` (and `{version}`) of a path the router gave this route; 404 for one
    /// that is not its.
    pub fn model_in<'p>(&self, path: &'p str) -> Result<(&'p str, Option<&'p str>), ApiError> {
        match self.params(path) {
            Some(Params {
                model: Some(model),
                version,
            }) => Ok((model, version)),
            _ => Err(ApiError::not_found(path)),
        }
    }

    /// The versioned path (`…/{model}/versions/{version}/…`) of a [`Shape::Versioned`]
    /// row, as the OpenAPI document names it.
    pub fn versioned_path(&self) -> Option<String> {
        (self.shape == Shape::Versioned).then(|| {
            self.path
                .replacen(MODEL, &format!("{MODEL}/{VERSIONS}/{VERSION}"), 1)
        })
    }
}

const MODEL: &str = "{model}";
const VERSIONS: &str = "versions";
const VERSION: &str = "{version}";

/// Matches `path` against `pattern` segment by segment; with `versioned`, the path may
/// also have `versions/{version}` right after `{model}`.
fn match_segments<'p>(pattern: &str, path: &'p str, versioned: bool) -> Option<Params<'p>> {
    if !pattern.contains('{') {
        return (pattern == path).then(Params::default);
    }
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    let mut params = Params::default();
    while let Some(w) = want.next() {
        let g = got.next()?;
        if !w.starts_with('{') {
            if w != g {
                return None;
            }
            continue;
        }
        if g.is_empty() {
            return None;
        }
        if w == MODEL {
            params.model = Some(g);
            // `versions/{version}` follows when the path is two segments longer.
            if versioned && got.clone().count() == want.clone().count() + 2 {
                if got.next() != Some(VERSIONS) {
                    return None;
                }
                params.version = Some(got.next().filter(|v| !v.is_empty())?);
            }
        }
    }
    got.next().is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ROUTES, UNKNOWN, route_of};

    fn label(path: &str) -> &'static str {
        route_of(path).label
    }

    #[test]
    fn routes_and_methods() {
        assert_eq!(route_of("/predict").path, "/predict");
        assert!(std::ptr::eq(route_of("/predict/"), &UNKNOWN));
        assert!(route_of("/predict").methods.allows(&Method::POST));
        assert!(!route_of("/predict").methods.allows(&Method::GET));
        assert!(route_of("/health").methods.allows(&Method::HEAD));
    }

    #[test]
    fn paths_find_their_routes_and_params() {
        let params = |path| route_of(path).params(path);
        assert_eq!(label("/v2"), "/v2/models/{model}");
        assert_eq!(label("/v2/"), "/v2/models/{model}");
        assert_eq!(label("/v2/health/live"), "/v2/health");
        assert_eq!(
            params("/v2/models/iris-mlp/versions/1.0.0/infer"),
            Some(Params {
                model: Some("iris-mlp"),
                version: Some("1.0.0")
            })
        );
        assert_eq!(
            label("/v2/models/iris-mlp/versions/1.0.0/infer"),
            "/v2/models/{model}/infer"
        );
        assert_eq!(
            params("/v2/models/iris-mlp"),
            Some(Params {
                model: Some("iris-mlp"),
                version: None
            })
        );
        assert_eq!(
            route_of("/v2/models/m/ready").path,
            "/v2/models/{model}/ready"
        );
        // A model may be called `versions`; a version `ready`.
        assert_eq!(
            params("/v2/models/versions/ready"),
            Some(Params {
                model: Some("versions"),
                version: None
            })
        );
        assert_eq!(
            route_of("/v2/models/m/versions/ready").path,
            "/v2/models/{model}"
        );
    }

    #[test]
    fn paths_of_no_route_are_unknown() {
        for bad in [
            "/v2/models/",
            "/v2/models/m/versions/",
            "/v2/models/m/versions",
            "/v2/models/m/infer/more",
            "/v2/models/m/explain",
            "/v2x",
            "/v1/models/m",
            "/v2/models//infer",
            "/v2/repository",
            "/v2/repository/index/x",
            "/v2/repository/models//load",
            "/v2/repository/models/iris",
            "/v2/repository/models/iris/delete",
            "/v2/repository/models/a/b/load",
            "//health",
        ] {
            assert_eq!(label(bad), "unknown", "{bad}");
        }
    }

    #[test]
    fn repository_paths_find_their_routes() {
        let params = |path| route_of(path).params(path);
        assert_eq!(label("/v2/repository/index"), "/v2/repository");
        assert_eq!(
            route_of("/v2/repository/models/iris/load").path,
            "/v2/repository/models/{model}/load"
        );
        assert_eq!(
            params("/v2/repository/models/iris/unload"),
            Some(Params {
                model: Some("iris"),
                version: None
            })
        );
    }

    #[test]
    fn grpc_methods_and_health_are_told_apart() {
        assert_eq!(
            label("/inference.GRPCInferenceService/ServerLive"),
            "grpc:health"
        );
        assert_eq!(
            label("/inference.GRPCInferenceService/ModelInfer"),
            "grpc:inference"
        );
        assert_eq!(
            route_of("/inference.GRPCInferenceService/ServerLive").scope,
            None
        );
        assert_eq!(label("/predict"), "/predict");
    }

    #[test]
    fn versioned_paths_are_derived() {
        let versioned: Vec<String> = ROUTES.iter().filter_map(RouteDef::versioned_path).collect();
        assert_eq!(
            versioned,
            [
                "/v2/models/{model}/versions/{version}",
                "/v2/models/{model}/versions/{version}/ready",
                "/v2/models/{model}/versions/{version}/infer",
            ]
        );
    }
}
