//! The one place that maps failures to HTTP statuses and JSON error bodies.
//!
//! Every error answer is `{"error":{"code":"snake_case","message":"..."}}`. The `code` is
//! stable (clients and dashboards key on it); the message says what was wrong and what is
//! allowed, and never carries internal details.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use utoipa::ToSchema;

use crate::admission::{Shed, retry_after_s};
use crate::auth::AuthError;
use crate::imaging::ImageError;
use crate::infer::InferError;
use crate::infer::manifest::InputKind;
use crate::infer::model::ModelError;
use crate::infer::model::on_demand::NotResident;
use crate::predict::{FlightError, PredictError};

/// A failure answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON, or not the expected JSON shape.
    #[error("{0}")]
    MalformedJson(String),
    /// No route has this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed; this route allows {allow}")]
    MethodNotAllowed { allow: &'static str },
    /// The client sent its request too slowly.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    RequestTimeout { timeout_ms: u64 },
    /// The body arrived slower than `http.min_body_bytes_per_s`.
    #[error("the request body arrived slower than {min_bytes_per_s} bytes a second")]
    BodyTooSlow { min_bytes_per_s: u64 },
    /// The body is larger than `server.max_body_bytes`.
    #[error("request body is larger than the {limit} bytes allowed")]
    PayloadTooLarge { limit: usize },
    /// The content type is not one this route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The model picked takes another kind of input (an image for a tabular model, or the
    /// reverse), or no loaded model takes this kind.
    #[error("{0}")]
    WrongInputKind(String),
    /// An image format that is recognised but not accepted (GIF, TIFF, ...).
    #[error("{0}")]
    UnsupportedImageFormat(String),
    /// An image whose dimensions or decoded size exceed the limits.
    #[error("{0}")]
    ImageTooLarge(String),
    /// A `multipart/form-data` body that cannot be parsed.
    #[error("{0}")]
    MalformedMultipart(String),
    /// Valid JSON whose values cannot be used (wrong count, NaN, empty, not numbers).
    #[error("{message}")]
    InvalidInput { code: &'static str, message: String },
    /// No API key, or one that is not valid, where the route needs one.
    #[error("{message}")]
    Unauthorized {
        message: String,
        /// A key was presented (and is wrong), rather than none.
        presented: bool,
    },
    /// A valid key without the scope the route needs.
    #[error("{message}")]
    Forbidden {
        message: String,
        /// The scope needed.
        scope: &'static str,
    },
    /// An admin route asked from off the gateway's machine while no keys are configured
    /// (protected mode); the message says how to open it.
    #[error("{0}")]
    ProtectedMode(String),
    /// `Content-Length` and `Transfer-Encoding` in one head: a smuggling attempt.
    #[error("the request has both Content-Length and Transfer-Encoding; send one of them")]
    AmbiguousFraming,
    /// A plain-HTTP request (to the redirect listener) without a usable `Host`.
    #[error("the request needs a Host header naming a DNS name or an address")]
    InvalidHost,
    /// More header fields than `http.max_headers`.
    #[error("the request has more than the {limit} header fields allowed")]
    TooManyHeaders { limit: usize },
    /// The caller's rate limit is used up.
    #[error("rate limit reached; retry after {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// The request names a model that is not loaded.
    #[error("{0}")]
    UnknownModel(String),
    /// The request names a version the model does not serve.
    #[error("{0}")]
    UnknownVersion(String),
    /// The model (or version) named failed to load or was unloaded; the others serve.
    #[error("{0}")]
    ModelUnavailable(String),
    /// A version loaded on demand failed to load lately; no new load is tried before
    /// `Retry-After` (or a change of its files).
    #[error("{message}")]
    LoadBackoff { message: String, retry_after_s: u64 },
    /// A version loaded on demand has no room in `repository.memory_budget_bytes` now.
    #[error("{message}")]
    InsufficientMemory { message: String, retry_after_s: u64 },
    /// The repository API could not load a model (its files, its manifest, its
    /// `model.toml`), or there is no repository.
    #[error("{0}")]
    ModelLoadFailed(String),
    /// A queue is full, or the model is at its adaptive concurrency limit.
    #[error("the server is overloaded; retry after {retry_after_s} s")]
    Overloaded { retry_after_s: u64 },
    /// The request's deadline passed (or too little of it was left) before an answer;
    /// work still queued then was dropped.
    #[error("no answer within the request's deadline of {budget_ms} ms")]
    DeadlineExceeded { budget_ms: u64 },
    /// An `X-Request-Timeout` or `grpc-timeout` that cannot be read.
    #[error("{0}")]
    InvalidTimeout(String),
    /// The compute threads are stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A bug: a panic or an impossible state. Details go to the log, not the client.
    #[error("internal error; the request id in X-Request-Id finds it in the log")]
    Internal,
}

/// The error body of every route but the Open Inference Protocol's.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "model_not_found", "message": "no model named \"nope\""}}))]
pub struct ErrorBody<'a> {
    /// What went wrong.
    pub error: ErrorDetail<'a>,
}

/// `error` of [`ErrorBody`].
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable, snake_case: clients and dashboards key on it.
    pub code: &'a str,
    /// What was wrong and what is allowed.
    pub message: String,
}

/// The Open Inference Protocol's error body, on its routes: `{"error": "<code>: <message>"}`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": "model_not_found: no model named \"nope\""}))]
pub struct OipErrorBody {
    /// The stable code, a colon, and what was wrong.
    pub error: String,
}

impl ApiError {
    /// No route (or page) at `path`, named by its first 200 characters: a path is the
    /// client's, and the answer should not echo an arbitrarily long one.
    pub fn not_found(path: &str) -> Self {
        Self::NotFound(path.chars().take(200).collect())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_)
            | Self::MalformedMultipart(_)
            | Self::InvalidTimeout(_)
            | Self::AmbiguousFraming
            | Self::InvalidHost => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } | Self::ProtectedMode(_) => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::NotFound(_) | Self::UnknownModel(_) | Self::UnknownVersion(_) => {
                StatusCode::NOT_FOUND
            }
            Self::ModelLoadFailed(_) => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout { .. } | Self::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } | Self::ImageTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_)
            | Self::WrongInputKind(_)
            | Self::UnsupportedImageFormat(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidInput { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded { .. }
            | Self::ShuttingDown
            | Self::ModelUnavailable(_)
            | Self::LoadBackoff { .. }
            | Self::InsufficientMemory { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable snake_case code in the body, also used as a log field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::ProtectedMode(_) => "protected_mode",
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManyHeaders { .. } => "too_many_headers",
            Self::AmbiguousFraming => "ambiguous_framing",
            Self::InvalidHost => "invalid_host",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::BodyTooSlow { .. } => "body_too_slow",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::WrongInputKind(_) => "wrong_input_kind",
            Self::UnsupportedImageFormat(_) => "unsupported_image_format",
            Self::ImageTooLarge(_) => "image_too_large",
            Self::MalformedMultipart(_) => "malformed_multipart",
            Self::InvalidInput { code, .. } => code,
            Self::UnknownModel(_) => "model_not_found",
            Self::UnknownVersion(_) => "version_not_found",
            Self::ModelUnavailable(_) | Self::LoadBackoff { .. } => "model_unavailable",
            Self::InsufficientMemory { .. } => "insufficient_memory",
            Self::ModelLoadFailed(_) => "model_load_failed",
            Self::Overloaded { .. } => "overloaded",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::InvalidTimeout(_) => "invalid_timeout",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }

    /// As [`ApiError::into_response`], with the Open Inference Protocol's body:
    /// `{"error": "<code>: <message>"}`.
    pub fn into_oip_response(self) -> Response<Full<Bytes>> {
        let body = OipErrorBody {
            error: format!("{}: {self}", self.code()),
        };
        let json = serde_json::to_vec(&body)
            .unwrap_or_else(|_| br#"{"error":"internal: cannot encode error"}"#.to_vec());
        let mut response = self.into_response();
        *response.body_mut() = Full::new(Bytes::from(json));
        response
    }

    /// The full response: status, JSON body and the headers the status calls for.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"error":{"code":"internal","message":"cannot encode error"}}"#.to_vec()
        });
        let mut response = Response::new(Full::new(Bytes::from(json)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            Self::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            // RFC 6750 §3: the scheme, and why a presented token failed.
            Self::Unauthorized { presented, .. } => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(if presented {
                        r#"Bearer realm="infergate", error="invalid_token""#
                    } else {
                        r#"Bearer realm="infergate""#
                    }),
                );
            }
            Self::Forbidden { scope, .. } => {
                let value = match scope {
                    "admin" => {
                        r#"Bearer realm="infergate", error="insufficient_scope", scope="admin""#
                    }
                    _ => r#"Bearer realm="infergate", error="insufficient_scope", scope="predict""#,
                };
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
            }
            Self::Overloaded { retry_after_s }
            | Self::LoadBackoff { retry_after_s, .. }
            | Self::InsufficientMemory { retry_after_s, .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            Self::RateLimited { retry_after_s } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            Self::ShuttingDown => {
                headers.insert(RETRY_AFTER, HeaderValue::from(1u32));
            }
            _ => {}
        }
        response
    }
}

impl From<ImageError> for ApiError {
    fn from(err: ImageError) -> Self {
        let message = err.to_string();
        match err {
            ImageError::Empty => Self::InvalidInput {
                code: "empty_image",
                message,
            },
            ImageError::NotAnImage => Self::InvalidInput {
                code: "not_an_image",
                message,
            },
            ImageError::Invalid(_) => Self::InvalidInput {
                code: "invalid_image",
                message,
            },
            ImageError::UnsupportedFormat(_) => Self::UnsupportedImageFormat(message),
            ImageError::TooLarge { .. } | ImageError::DecodeLimit(_) => {
                Self::ImageTooLarge(message)
            }
            ImageError::Overloaded { .. } => Self::Overloaded { retry_after_s: 1 },
            ImageError::Stopped => Self::ShuttingDown,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let message = err.to_string();
        match err {
            AuthError::Missing => Self::Unauthorized {
                message,
                presented: false,
            },
            AuthError::Invalid => Self::Unauthorized {
                message,
                presented: true,
            },
            AuthError::Forbidden { needed, .. } => Self::Forbidden {
                message,
                scope: needed,
            },
            AuthError::Protected => Self::ProtectedMode(message),
        }
    }
}

/// The status of a `/ready` answer: 200 when ready, 503 otherwise.
pub fn readiness_status(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

impl From<PredictError> for ApiError {
    fn from(err: PredictError) -> Self {
        match err {
            PredictError::FeatureCount {
                expected,
                got,
                ref names,
            } => Self::InvalidInput {
                code: "wrong_feature_count",
                message: format!(
                    "expected {expected} features ({}), got {got}",
                    names.join(", ")
                ),
            },
            PredictError::MissingFeature { index, ref model } => Self::InvalidInput {
                code: "non_numeric_feature",
                message: format!(
                    "features[{index}] is null; model {model:?} takes no missing values, so \
                     every feature must be a number"
                ),
            },
            PredictError::DeadlineExceeded { budget_ms } => Self::DeadlineExceeded { budget_ms },
            PredictError::Model(e) => e.into(),
            PredictError::Image(e) | PredictError::Flight(FlightError::Image(e)) => e.into(),
            PredictError::Flight(FlightError::Infer(shared)) => Self::from_infer(&shared),
            PredictError::Flight(FlightError::NonFiniteOutput { model }) => Self::InvalidInput {
                code: "non_finite_output",
                message: format!(
                    "model {model:?} computes no number from these inputs: they are too far \
                     outside the range it takes"
                ),
            },
            PredictError::Flight(FlightError::Shed(shed)) => match shed {
                Shed::Concurrency { retry_after, .. } => Self::Overloaded {
                    retry_after_s: retry_after_s(retry_after),
                },
                // Answered as the deadline it is (Predictor::predict maps it first).
                Shed::Deadline { .. } => Self::DeadlineExceeded { budget_ms: 0 },
            },
        }
    }
}

impl From<InferError> for ApiError {
    fn from(err: InferError) -> Self {
        Self::from_infer(&err)
    }
}

impl ApiError {
    /// The answer to an inference failure (possibly one shared by coalesced requests).
    fn from_infer(err: &InferError) -> Self {
        match err {
            InferError::UnknownModel { name, loaded } => {
                Self::UnknownModel(format!("no model named {name:?}; loaded models: {loaded}"))
            }
            InferError::UnknownVersion { .. } => Self::UnknownVersion(err.to_string()),
            InferError::Unavailable { .. } => Self::ModelUnavailable(err.to_string()),
            InferError::WrongInput { model, expects, .. } => {
                Self::WrongInputKind(format!("model {model:?} takes {}", expects.how_to_send()))
            }
            InferError::NoModelFor { kind, loaded } => Self::WrongInputKind(format!(
                "no loaded model takes this input (loaded: {loaded}); send {}",
                match kind {
                    InputKind::Image | InputKind::Tensors => InputKind::Features.how_to_send(),
                    InputKind::Features => InputKind::Image.how_to_send(),
                }
            )),
            InferError::Overloaded { .. } => Self::Overloaded { retry_after_s: 1 },
            InferError::NotResident(refused) => match refused {
                NotResident::LoadFailed { retry_after, .. } => Self::LoadBackoff {
                    message: refused.to_string(),
                    retry_after_s: retry_after_s(*retry_after),
                },
                NotResident::InsufficientMemory { retry_after, .. } => Self::InsufficientMemory {
                    message: refused.to_string(),
                    retry_after_s: retry_after_s(*retry_after),
                },
                NotResident::Deadline => Self::DeadlineExceeded { budget_ms: 0 },
                NotResident::Stopped => Self::ShuttingDown,
            },
            InferError::Stopped => Self::ShuttingDown,
            InferError::DeadlineExceeded => Self::DeadlineExceeded { budget_ms: 0 },
            InferError::Model(ModelError::UnseenCategory(message)) => Self::InvalidInput {
                code: "unseen_category",
                message: message.clone(),
            },
            InferError::Model(_) | InferError::Panicked(_) | InferError::Spawn(_) => {
                tracing::error!(error = %err, source = ?std::error::Error::source(err), "inference failed");
                Self::Internal
            }
        }
    }
}
