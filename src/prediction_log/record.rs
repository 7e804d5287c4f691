//! What the request path hands the sink ([`LogRow`], cheap to build), and the row the
//! writer stores ([`Record`], one column per field), derived off the request path.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The input a prediction was made from.
#[derive(Debug, Clone)]
pub enum LoggedInput {
    /// A tabular feature vector.
    Features(Vec<f32>),
    /// An image, by its size (its MD5 is in the answer's `image_hash`).
    Image { bytes: usize },
}

/// How a candidate version's output compared with the answer's, for a request that shadow
/// mirroring also ran through that candidate (off the response path).
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowDiff {
    /// The candidate model version that was also run.
    pub version: String,
    /// Whether the candidate's top class is the answer's; `None` for regressors.
    pub top1_agree: Option<bool>,
    /// The largest |p_answer - p_candidate| over the classes (regressors: the absolute
    /// difference of the two values).
    pub max_delta: f32,
}

/// One served prediction, as the request path hands it over: owned values and the
/// answer's shared bytes, no parsing, no formatting.
#[derive(Debug, Clone)]
pub struct LogRow {
    /// The UUIDv7 the client got.
    pub prediction_id: Uuid,
    /// The request's `X-Request-Id`.
    pub request_id: Arc<str>,
    /// When the answer was ready.
    pub created_at: SystemTime,
    /// Model name and version (shared with the model: the row costs no copy on the
    /// request path; the log's thread copies them into the stored [`Record`]).
    pub model_name: Arc<str>,
    pub model_version: Arc<str>,
    /// `hit-l1`, `hit-l2`, `miss`, `coalesced` or `bypass`.
    pub cache_status: &'static str,
    /// The cache key's hash, 32 hex digits.
    pub input_hash: u128,
    /// What was asked.
    pub input: LoggedInput,
    /// The answer's model-dependent JSON members (`"model":..,"prediction":..`).
    pub answer: Bytes,
    /// Its top confidence; `None` for a regressor's value.
    pub confidence: Option<f32>,
    /// Time from request head to answer.
    pub latency: Duration,
    /// The client's address, when `prediction_log.log_client_addr` is on.
    pub client_addr: Option<IpAddr>,
    /// The name of the API key the request came with.
    pub api_key: Option<Arc<str>>,
    /// The request's W3C trace id, 32 hex digits.
    pub trace_id: Option<String>,
    /// The shadow comparison, when the request was also run by a candidate version.
    pub shadow: Option<ShadowDiff>,
    /// Time the request waited for its model to load on demand (a cold request's).
    pub model_load: Option<Duration>,
}

/// One `predictions` row: what the writer COPYs, and what the spool stores (as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub prediction_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub created_at_us: i64,
    pub request_id: String,
    pub model_name: String,
    pub model_version: String,
    pub cache_status: String,
    pub input_hash: String,
    /// The features, a missing one (JSON `null`) as NULL.
    pub input_features: Option<Vec<Option<f32>>>,
    pub image_hash: Option<String>,
    /// The upload's size in bytes (images only; absent from rows spooled by older versions).
    #[serde(default)]
    pub image_bytes: Option<i32>,
    /// The label (classifiers) or the value as text (regressors).
    pub prediction: String,
    pub top_class: Option<i32>,
    /// `None` for a regressor's value (NULL).
    pub confidence: Option<f32>,
    /// `top_k` (tabular) or `predictions` (image), as answered.
    pub all_predictions: serde_json::Value,
    pub latency_us: i64,
    pub client_addr: Option<IpAddr>,
    /// The API key's name (absent from rows spooled by older versions).
    #[serde(default)]
    pub api_key: Option<String>,
    /// The W3C trace id (absent from rows spooled by older versions).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The candidate version a shadow run used ([`ShadowDiff::version`]); `None` when the
    /// request was not mirrored (and in rows spooled by older versions).
    #[serde(default)]
    pub shadow_version: Option<String>,
    /// [`ShadowDiff::top1_agree`], when mirrored.
    #[serde(default)]
    pub shadow_top1_agree: Option<bool>,
    /// [`ShadowDiff::max_delta`], when mirrored.
    #[serde(default)]
    pub shadow_max_delta: Option<f32>,
    /// [`LogRow::model_load`], microseconds (absent from rows spooled by older versions).
    #[serde(default)]
    pub model_load_us: Option<i64>,
}

impl Record {
    /// Derives the stored row from what the request path handed over. Text that Postgres
    /// cannot store (NUL) is dropped here, whatever its origin.
    pub fn from_row(row: LogRow) -> Self {
        let members: serde_json::Value =
            serde_json::from_slice(&[b"{", &row.answer[..], b"}"].concat())
                .unwrap_or(serde_json::Value::Null);
        let prediction = match &members["prediction"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => match &members["predictions"][0]["label"] {
                serde_json::Value::String(s) => s.clone(),
                _ => String::new(),
            },
            other => other.to_string(),
        };
        let top_class = members["class_id"]
            .as_i64()
            .or_else(|| members["predictions"][0]["class_id"].as_i64())
            .and_then(|c| i32::try_from(c).ok());
        let all_predictions = match (&members["top_k"], &members["predictions"]) {
            (serde_json::Value::Array(a), _) | (_, serde_json::Value::Array(a)) => {
                serde_json::Value::Array(a.clone())
            }
            // A tensor model's outputs, by name.
            _ if members["outputs"].is_object() => members["outputs"].clone(),
            _ => serde_json::Value::Array(Vec::new()),
        };
        let (input_features, image_hash, image_bytes) = match row.input {
            LoggedInput::Features(f) => (
                Some(f.into_iter().map(|v| (!v.is_nan()).then_some(v)).collect()),
                None,
                None,
            ),
            LoggedInput::Image { bytes } => (
                None,
                members["image_hash"].as_str().map(clean),
                Some(i32::try_from(bytes).unwrap_or(i32::MAX)),
            ),
        };
        // Three nullable columns rather than one JSON value, so a comparison can be
        // filtered and aggregated in SQL; all set or all NULL (but `shadow_top1_agree`,
        // NULL for a regressor's comparison).
        let (shadow_version, shadow_top1_agree, shadow_max_delta) = match row.shadow {
            Some(d) => (Some(clean(d.version)), d.top1_agree, Some(d.max_delta)),
            None => (None, None, None),
        };
        Self {
            prediction_id: row.prediction_id,
            created_at_us: unix_micros(row.created_at),
            request_id: clean(&*row.request_id),
            model_name: clean(&*row.model_name),
            model_version: clean(&*row.model_version),
            cache_status: row.cache_status.to_owned(),
            input_hash: format!("{:032x}", row.input_hash),
            input_features,
            image_hash,
            image_bytes,
            prediction: clean(prediction),
            top_class,
            confidence: row.confidence,
            all_predictions: strip_nul(all_predictions),
            latency_us: i64::try_from(row.latency.as_micros()).unwrap_or(i64::MAX),
            client_addr: row.client_addr,
            api_key: row.api_key.map(|k| clean(&*k)),
            trace_id: row.trace_id.map(clean),
            shadow_version,
            shadow_top1_agree,
            shadow_max_delta,
            model_load_us: row
                .model_load
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// `created_at` as a time.
    pub fn created_at(&self) -> SystemTime {
        let micros = Duration::from_micros(self.created_at_us.unsigned_abs());
        if self.created_at_us >= 0 {
            UNIX_EPOCH + micros
        } else {
            UNIX_EPOCH - micros
        }
    }
}

fn unix_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// `s` without U+0000, which Postgres `text` and `jsonb` cannot hold: an owned `String` is
/// kept as it is when clean, a shared `&str` (the request path's) is copied here, on the
/// log's thread.
fn clean(s: impl AsRef<str> + Into<String>) -> String {
    if s.as_ref().contains('\0') {
        s.as_ref().replace('\0', "")
    } else {
        s.into()
    }
}

fn strip_nul(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nul).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (clean(k), strip_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::model::Model as _;

    fn row(answer: Bytes) -> LogRow {
        LogRow {
            prediction_id: Uuid::now_v7(),
            request_id: "req\0-1".into(),
            created_at: UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            model_name: "iris-mlp".into(),
            model_version: "1.0.0".into(),
            cache_status: "miss",
            input_hash: 0xab,
            input: LoggedInput::Features(vec![5.1, 3.5, 1.4, 0.2]),
            answer,
            confidence: Some(0.9),
            latency: Duration::from_micros(1234),
            client_addr: None,
            api_key: Some(Arc::from("mobile-app")),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            shadow: None,
            model_load: None,
        }
    }

    #[test]
    fn a_tabular_answer_becomes_columns() {
        let model = crate::infer::demo::load().unwrap();
        let answer = crate::encode::tabular(model.info(), &[0.1, 0.7, 0.2]);
        let r = Record::from_row(row(answer.body));
        assert_eq!(r.prediction, "versicolor");
        assert_eq!(r.top_class, Some(1));
        assert_eq!(r.all_predictions.as_array().unwrap().len(), 3);
        assert_eq!(r.request_id, "req-1", "NUL removed");
        assert_eq!(r.api_key.as_deref(), Some("mobile-app"));
        assert_eq!(
            r.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(r.input_hash, format!("{:032x}", 0xab));
        assert_eq!(r.created_at_us, 1_700_000_000_123_456);
        assert_eq!(
            r.created_at(),
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)
        );
        assert_eq!(r.latency_us, 1234);
    }

    #[test]
    fn an_unparsable_answer_still_gives_a_row() {
        let r = Record::from_row(row(Bytes::from_static(b"not json")));
        assert_eq!(r.prediction, "");
        assert_eq!(r.top_class, None);
        assert_eq!(r.all_predictions, serde_json::json!([]));
    }

    #[test]
    fn an_image_answer_becomes_columns() {
        let model = crate::infer::demo::load().unwrap();
        let answer = crate::encode::image(model.info(), "0123abcd", &[0.1, 0.7, 0.2]);
        let mut input = row(answer.body);
        input.input = LoggedInput::Image { bytes: 12345 };
        let r = Record::from_row(input);
        assert_eq!(r.image_hash.as_deref(), Some("0123abcd"));
        assert_eq!(r.image_bytes, Some(12345));
        assert_eq!(r.input_features, None);
        assert_eq!(r.prediction, "versicolor");
        assert_eq!(r.top_class, Some(1));
        assert_eq!(r.all_predictions.as_array().unwrap().len(), 3);
    }

    #[test]
    fn records_spooled_before_image_bytes_existed_still_read() {
        let model = crate::infer::demo::load().unwrap();
        let r = Record::from_row(row(
            crate::encode::tabular(model.info(), &[0.2, 0.3, 0.5]).body
        ));
        let mut json: serde_json::Value = serde_json::to_value(&r).unwrap();
        json.as_object_mut().unwrap().remove("image_bytes");
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_shadow_diff_becomes_three_columns_and_none_leaves_them_null() {
        let model = crate::infer::demo::load().unwrap();
        let body = crate::encode::tabular(model.info(), &[0.1, 0.7, 0.2]).body;
        let unmirrored = Record::from_row(row(body.clone()));
        assert_eq!(
            (
                &unmirrored.shadow_version,
                unmirrored.shadow_top1_agree,
                unmirrored.shadow_max_delta
            ),
            (&None, None, None)
        );
        let mut mirrored = row(body);
        mirrored.shadow = Some(ShadowDiff {
            version: "2.0.0\0-rc1".into(),
            top1_agree: Some(false),
            max_delta: 0.375,
        });
        let r = Record::from_row(mirrored);
        assert_eq!(
            r.shadow_version.as_deref(),
            Some("2.0.0-rc1"),
            "NUL removed"
        );
        assert_eq!(r.shadow_top1_agree, Some(false));
        assert_eq!(r.shadow_max_delta, Some(0.375));
    }

    #[test]
    fn records_spooled_before_shadow_columns_existed_still_read() {
        let model = crate::infer::demo::load().unwrap();
        let r = Record::from_row(row(
            crate::encode::tabular(model.info(), &[0.2, 0.3, 0.5]).body
        ));
        let mut json: serde_json::Value = serde_json::to_value(&r).unwrap();
        let object = json.as_object_mut().unwrap();
        for field in ["shadow_version", "shadow_top1_agree", "shadow_max_delta"] {
            assert!(object.remove(field).is_some(), "{field} is serialized");
        }
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn records_round_trip_through_json_exactly() {
        let model = crate::infer::demo::load().unwrap();
        let mut r = Record::from_row(row(
            crate::encode::tabular(model.info(), &[0.2, 0.3, 0.5]).body
        ));
        r.input_features = Some(vec![
            Some(0.1),
            Some(f32::MIN_POSITIVE),
            None,
            Some(1e-30),
            Some(3.402_823e38),
        ]);
        r.client_addr = Some("2001:db8::1".parse().unwrap());
        r.shadow_version = Some("2.0.0".into());
        r.shadow_top1_agree = Some(true);
        r.shadow_max_delta = Some(f32::MIN_POSITIVE);
        let back: Record = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
