//! Request bodies: content-type checks, size- and time-limited reading, JSON decoding and
//! validation into the types `predict` takes.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::deadline::Deadline;
use crate::http::Timing;
use crate::http::error::ApiError;
use crate::http::types::{BadFeature, TabularRequest};
use crate::predict::TabularInput;
use crate::state::{BodyLimits, Gateway};

/// What a `/predict` body claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredictContent {
    /// `application/json` (or no content type at all): a tabular request.
    Json,
    /// `multipart/form-data` with this boundary: an image upload in field `file`.
    Multipart { boundary: String },
    /// `image/*`: the body is the image.
    Image,
}

/// Classifies the `Content-Type` of a `/predict` request.
pub fn predict_content(headers: &HeaderMap) -> Result<PredictContent, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(PredictContent::Json);
    };
    let Ok(text) = value.to_str() else {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type is not valid text; send application/json".into(),
        ));
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(PredictContent::Json),
        "multipart/form-data" => match multer::parse_boundary(text) {
            Ok(boundary) => Ok(PredictContent::Multipart { boundary }),
            Err(_) => Err(ApiError::MalformedMultipart(
                "multipart/form-data needs a boundary parameter \
                 (Content-Type: multipart/form-data; boundary=...)"
                    .into(),
            )),
        },
        e if e.starts_with("image/") => Ok(PredictContent::Image),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not accepted; send application/json \
             ({{\"features\":[..]}}), multipart/form-data or image/*"
        ))),
    }
}

/// Most bytes of an abandoned body read and thrown away after the answer, and for how
/// long (nginx's "lingering close" bounds the same thing).
const DISCARD_MAX_BYTES: usize = 64 * 1024 * 1024;
const DISCARD_MAX_TIME: Duration = Duration::from_secs(5);

/// A request body that, dropped before its end (a refusal answered without reading it, a
/// 413 stopped at the limit, a timeout), is read and thrown away in the background, within
/// [`DISCARD_MAX_BYTES`] and [`DISCARD_MAX_TIME`]. Abandoning it outright loses answers:
/// HTTP/2 resets the stream, which some clients (curl 7.88) report as a failure before they
/// read the answer, and an HTTP/1.1 socket closed with unread bytes sends a TCP reset that
/// can destroy the answer in flight.
pub struct RequestBody(Option<Incoming>);

impl RequestBody {
    /// Wraps a connection's body.
    pub fn new(body: Incoming) -> Self {
        Self(Some(body))
    }

    fn incoming(&mut self) -> Option<&mut Incoming> {
        self.0.as_mut()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Without a runtime (never on a connection) there is nothing to drain on.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let discard = async {
                let mut seen = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    seen += frame.data_ref().map_or(0, Bytes::len);
                    if seen > DISCARD_MAX_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DISCARD_MAX_TIME, discard).await;
        });
    }
}

impl BodyLimits {
    /// When `received` bytes, started at `start`, fall below the minimum pace (the moment
    /// to have had one more byte by); `None` without a minimum.
    fn pace_deadline(&self, start: Instant, received: usize) -> Option<Instant> {
        let rate = self.min_bytes_per_s;
        (rate > 0).then(|| {
            let due = Duration::from_secs_f64((received as f64 + 1.0) / rate as f64);
            start + due.max(self.grace)
        })
    }
}

/// A prediction request's deadline (from its headers, counted from `received`) and its
/// body, read within the body limits; the read's time goes into `timing`.
pub async fn deadline_and_body(
    gw: &Gateway,
    parts: &http::request::Parts,
    body: RequestBody,
    received: Instant,
    timing: &mut Timing,
) -> Result<(Deadline, Bytes), ApiError> {
    let deadline = gw
        .serving
        .limits
        .deadline
        .for_request(&parts.headers, received)
        .map_err(|e| ApiError::InvalidTimeout(e.to_string()))?;
    let started = Instant::now();
    let bytes = read_limited(body, &parts.headers, &gw.serving.limits.body).await?;
    timing.add("read", started.elapsed());
    Ok((deadline, bytes))
}

/// Whether the request says `Cache-Control: no-cache` (or `no-store`, or `max-age=0`).
pub fn asks_no_cache(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "no-cache" || d == "no-store" || d == "max-age=0")
}

/// Reads the whole body under `limits`: 413 past the size (by `Content-Length` at once, or
/// while reading), 408 past the time or below the pace.
///
/// A `Content-Length` above the limit is refused before a byte of the body is read. What a
/// refused body still sends is drained by [`RequestBody`]'s drop, so the client gets the 413.
pub async fn read_limited(
    mut body: RequestBody,
    headers: &HeaderMap,
    limits: &BodyLimits,
) -> Result<Bytes, ApiError> {
    let limit = limits.max_bytes;
    let timeout = limits.timeout;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let Some(incoming) = body.incoming() else {
        return Ok(Bytes::new());
    };
    let read = tokio::time::timeout(timeout, collect_up_to(incoming, limits)).await;
    match read {
        Err(_) => Err(ApiError::RequestTimeout {
            timeout_ms: timeout.as_millis() as u64,
        }),
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => Err(ApiError::PayloadTooLarge { limit }),
        Ok(Err(Unread::Slow)) => Err(ApiError::BodyTooSlow {
            min_bytes_per_s: limits.min_bytes_per_s,
        }),
        Ok(Err(Unread::Http(e))) => Err(ApiError::MalformedJson(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// Why a body was not read to its end.
enum Unread {
    Http(hyper::Error),
    /// It arrived below the minimum pace.
    Slow,
}

/// The body's bytes, or `None` as soon as it exceeds the size limit.
async fn collect_up_to(body: &mut Incoming, limits: &BodyLimits) -> Result<Option<Bytes>, Unread> {
    let start = Instant::now();
    let mut buf = BytesMut::new();
    loop {
        let next = match limits.pace_deadline(start, buf.len()) {
            Some(due) => tokio::time::timeout_at(due, body.frame())
                .await
                .map_err(|_| Unread::Slow)?,
            None => body.frame().await,
        };
        let Some(frame) = next else { break };
        let Ok(data) = frame.map_err(Unread::Http)?.into_data() else {
            continue; // trailers
        };
        if buf.len() + data.len() > limits.max_bytes {
            return Ok(None);
        }
        buf.extend_from_slice(&data);
    }
    Ok(Some(buf.freeze()))
}

/// Decodes and validates a tabular JSON body: an object with a non-empty `features` array
/// of finite numbers (or `null`s, missing values, which only some models take: checked
/// once the model is known), and an optional `model` name.
pub fn decode_tabular(bytes: &[u8]) -> Result<TabularInput, ApiError> {
    // serde would also read a struct from an array (`[[1,2]]`); only an object is an answer
    // the client meant.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::MalformedJson(
            "the body must be a JSON object like {\"features\": [1.0, 2.0]}".into(),
        ));
    }
    let request: TabularRequest =
        serde_json::from_slice(bytes).map_err(|e| json_error(bytes, &e))?;
    let Some(features) = request.features else {
        return Err(ApiError::InvalidInput {
            code: "missing_features",
            message: "the body needs a \"features\" array of numbers".into(),
        });
    };
    if let Some((index, bad)) = features.first_bad {
        return Err(match bad {
            BadFeature::NotFinite => ApiError::InvalidInput {
                code: "non_finite_feature",
                message: format!(
                    "features[{index}] is not a finite number (NaN, infinity or beyond f32 range)"
                ),
            },
            BadFeature::NotANumber(what) => ApiError::InvalidInput {
                code: "non_numeric_feature",
                message: format!("features[{index}] is {what}; every feature must be a number"),
            },
        });
    }
    if features.len == 0 {
        return Err(ApiError::InvalidInput {
            code: "empty_features",
            message: "\"features\" is empty".into(),
        });
    }
    Ok(TabularInput {
        model: request.model,
        version: request.version,
        features: features.values,
        len: features.len,
        missing: features.first_missing,
    })
}

/// Turns a serde error into the right answer: bare `NaN`/`Infinity` tokens (what Python's
/// `json.dumps` writes for non-finite floats) are invalid input, anything else malformed.
fn json_error(bytes: &[u8], err: &serde_json::Error) -> ApiError {
    if err.is_syntax() && starts_non_finite_token(bytes, err.line(), err.column()) {
        return ApiError::InvalidInput {
            code: "non_finite_feature",
            message: "NaN and Infinity are not valid feature values".into(),
        };
    }
    if err.is_data() {
        return ApiError::MalformedJson(format!(
            "the body must be an object like {{\"features\": [1.0, 2.0]}}: {err}"
        ));
    }
    ApiError::MalformedJson(format!("the body is not valid JSON: {err}"))
}

fn starts_non_finite_token(bytes: &[u8], line: usize, column: usize) -> bool {
    // serde_json counts lines and columns from 1; find the byte the error points at.
    let mut offset = 0;
    for _ in 1..line {
        match bytes[offset..].iter().position(|&b| b == b'\n') {
            Some(p) => offset += p + 1,
            None => return false,
        }
    }
    let at = (offset + column).saturating_sub(1);
    let rest = bytes.get(at..).unwrap_or_default();
    let rest = rest.strip_prefix(b"-").unwrap_or(rest);
    rest.starts_with(b"NaN") || rest.starts_with(b"Infinity")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        decode_tabular(body.as_bytes())
            .err()
            .map_or("ok", |e| e.code())
    }

    #[test]
    fn decode_table() {
        assert_eq!(code(r#"{"features":[1,2,3,4]}"#), "ok");
        assert_eq!(code(r#"{"features":[1,2,"#), "malformed_json");
        assert_eq!(code(r#"[1,2]"#), "malformed_json");
        assert_eq!(code(r#"{"features":"x"}"#), "malformed_json");
        assert_eq!(code(r#"{"features":[1,NaN]}"#), "non_finite_feature");
        assert_eq!(code("{\"features\":\n[1,-Infinity]}"), "non_finite_feature");
        assert_eq!(code(r#"{"features":[1,"2"]}"#), "non_numeric_feature");
        assert_eq!(code(r#"{"features":[]}"#), "empty_features");
        assert_eq!(code(r#"{}"#), "missing_features");
        assert_eq!(code(r#"{"features":[1,true]}"#), "non_numeric_feature");
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert_eq!(predict_content(&h).ok(), Some(PredictContent::Json));
        h.insert(
            CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(predict_content(&h).ok(), Some(PredictContent::Json));
        h.insert(CONTENT_TYPE, "image/jpeg".parse().unwrap());
        assert_eq!(predict_content(&h).ok(), Some(PredictContent::Image));
        h.insert(
            CONTENT_TYPE,
            "multipart/form-data; boundary=xyz".parse().unwrap(),
        );
        assert_eq!(
            predict_content(&h).ok(),
            Some(PredictContent::Multipart {
                boundary: "xyz".into()
            })
        );
        h.insert(CONTENT_TYPE, "multipart/form-data".parse().unwrap());
        assert_eq!(
            predict_content(&h).err().map(|e| e.code()),
            Some("malformed_multipart")
        );
        h.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(
            predict_content(&h).err().map(|e| e.code()),
            Some("unsupported_media_type")
        );
    }
}
