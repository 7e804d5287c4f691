//! Schemas of the answers that handlers still build with `serde_json::json!` (health,
//! readiness, `/stats`, the Open Inference Protocol's health and metadata, the model
//! repository), for the OpenAPI document only: nothing serializes these types. They follow
//! the handlers field for field; `tests/it/openapi.rs` (schemathesis against the real server)
//! fails when an answer and its schema part ways, so a change to one is a change to both.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// `GET /health`: the process serves.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "healthy", "model": "iris-mlp", "version": "1.0.0", "uptime_s": 42}))]
pub struct Health {
    /// Always `healthy` while the process answers.
    pub status: HealthStatus,
    /// The default model's name; `null` when no model serves.
    pub model: Option<String>,
    /// The default model's version; `null` when no model serves.
    pub version: Option<String>,
    /// Seconds since the process started.
    pub uptime_s: u64,
}

/// `status` of `GET /health`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The only value: an answer at all means alive.
    Healthy,
}

/// `GET /ready`: 200 with `ready`, 503 with `not_ready`, the same body.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready` once every model answered its warm-up, while no drain has begun and no
    /// dependency in `ready.require` is down.
    pub status: ReadyStatus,
    /// A drain (SIGTERM) has begun.
    pub draining: bool,
    /// The public listener is open (a standby instance is ready but not listening).
    pub listening: bool,
    /// The I/O backend serving: `uring` or `epoll`.
    pub io_backend: String,
    /// What readiness was decided from.
    pub checks: ReadyChecks,
    /// The dependencies in `ready.require` that are down (`redis`, `database`).
    pub required_down: Vec<String>,
}

/// `status` of `GET /ready`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Serving: 200.
    Ready,
    /// Warming up, draining, or a required dependency is down: 503.
    NotReady,
}

/// `checks` of `GET /ready`.
#[derive(Serialize, ToSchema)]
pub struct ReadyChecks {
    /// `ok` once every model answered its warm-up inference.
    pub model: WarmUp,
    /// Each model by name: `ok`, `unavailable` (it failed to load) or `unloaded`.
    pub models: BTreeMap<String, ModelCheck>,
    /// The L2 cache. Down alone degrades (L1 only); it does not make a replica unready
    /// unless `ready.require` lists it.
    pub redis: Dependency,
    /// The prediction log's database; as `redis`.
    pub database: Dependency,
}

/// `checks.model` of `GET /ready`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WarmUp {
    /// Every model answered its warm-up inference.
    Ok,
    /// Some model has not yet.
    WarmingUp,
}

/// One model's entry in `checks.models` of `GET /ready`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelCheck {
    /// A version serves.
    Ok,
    /// It failed to load; the others serve.
    Unavailable,
    /// Unloaded through the repository API.
    Unloaded,
}

/// A dependency's state (`checks.redis`, `checks.database`, `/stats`' prediction log).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    /// Configured and answering.
    Ok,
    /// Configured and not answering (or still connecting).
    Down,
    /// Not configured.
    Disabled,
}

/// `GET /stats`: prediction totals, cache and batching counters, limits, models.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// Predictions ever logged (`predictions_source` says from where).
    pub total_predictions: u64,
    /// Predictions in the last hour.
    pub predictions_last_hour: u64,
    /// Mean confidence of those predictions; 0 when there is none.
    pub average_confidence: f64,
    /// Where the three totals above come from.
    pub predictions_source: PredictionsSource,
    /// Predictions this process answered since it started.
    pub served_by_this_process: u64,
    /// The prediction log's writer.
    pub prediction_log: PredictionLogStats,
    /// The cache tiers on: `l1+l2`, `l1` or `disabled`.
    pub cache: String,
    /// Answers from a cache tier.
    pub cache_hits: u64,
    /// Answers computed (coalesced and bypassed ones included).
    pub cache_misses: u64,
    /// Hits over lookups, 0 before any.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub cache_hit_rate: f64,
    /// Answers from the in-process cache.
    pub cache_hits_l1: u64,
    /// Answers from Redis.
    pub cache_hits_l2: u64,
    /// Answers shared with an identical request in flight.
    pub coalesced: u64,
    /// Answers computed because the request said `Cache-Control: no-cache`.
    pub cache_bypassed: u64,
    /// Forward passes run for requests.
    pub batches: BatchStats,
    /// Jobs waiting for a compute thread.
    pub inference_queue_depth: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// The public listener is open.
    pub listening: bool,
    /// The I/O backend serving: `uring` or `epoll`.
    pub io_backend: String,
    /// API keys in force; `null` when the gateway is open (no key file).
    pub api_keys: Option<u64>,
    /// Rate limiting.
    pub rate_limit: RateLimitStats,
    /// Each model's adaptive concurrency limit (empty with `admission.adaptive = false`).
    pub admission: Vec<AdmissionGate>,
    /// Every model the repository knows, serving or not.
    pub models: Vec<ModelStats>,
    /// Seconds since the process started.
    pub uptime_s: u64,
}

/// `predictions_source` of `GET /stats`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PredictionsSource {
    /// This process's counters: no prediction log, or its database never answered.
    Memory,
    /// The log's table, read at most `prediction_log.stats_cache_ms` ago.
    Database,
    /// The log's table, an older reading (the database is not answering now).
    DatabaseStale,
}

/// `prediction_log` of `GET /stats`: `{"status": "disabled"}` without a log, else its
/// writer's counters.
#[derive(Serialize, ToSchema)]
pub struct PredictionLogStats {
    /// The database: `disabled` (no log), `ok` or `down`.
    pub status: Dependency,
    /// Rows written to the database.
    pub rows_written: Option<u64>,
    /// Rows spooled to disk while the database was away.
    pub rows_spooled: Option<u64>,
    /// Spooled rows written since.
    pub rows_replayed: Option<u64>,
    /// Rows lost (queue and spool full).
    pub rows_dropped: Option<u64>,
    /// Rows waiting in the writer's queue.
    pub queue_depth: Option<u64>,
    /// Bytes in the spool.
    pub spool_bytes: Option<u64>,
    /// Spool segments found torn (cut short by a crash) and skipped.
    pub spool_torn_segments: Option<u64>,
}

/// `batches` of `GET /stats`.
#[derive(Serialize, ToSchema)]
pub struct BatchStats {
    /// Forward passes run for requests (warm-up excluded).
    pub count: u64,
    /// Rows those passes carried.
    pub rows: u64,
    /// Rows per pass on average; 0 before any.
    pub mean_size: f64,
    /// The most rows one pass carried.
    pub max_size: u64,
}

/// `rate_limit` of `GET /stats`.
#[derive(Serialize, ToSchema)]
pub struct RateLimitStats {
    /// Any rate limit is configured.
    pub on: bool,
    /// Clients with a bucket now (bounded by `rate_limit.max_tracked_clients`).
    pub tracked_clients: u64,
}

/// One model's adaptive concurrency limit (`admission` of `GET /stats`).
#[derive(Serialize, ToSchema)]
pub struct AdmissionGate {
    /// The model.
    pub model: String,
    /// Work admitted at once now.
    pub limit: u64,
    /// Work admitted and not finished.
    pub in_flight: u64,
    /// The best latency seen lately, ms; `null` before any.
    pub baseline_ms: Option<f64>,
}

/// One model in `models` of `GET /stats`.
#[derive(Serialize, ToSchema)]
pub struct ModelStats {
    /// Its name.
    pub name: String,
    /// Its first version; `null` when none is loaded.
    pub version: Option<String>,
    /// Every version loaded.
    pub versions: Vec<String>,
    /// As the repository index says.
    pub state: ModelState,
    /// Why it does not serve; `null` when it does.
    pub reason: Option<String>,
}

/// A model's state, as Triton's repository index names them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ModelState {
    /// Serving.
    Ready,
    /// It failed to load.
    Unavailable,
    /// Being loaded.
    Loading,
    /// Unloaded through the repository API.
    Unloaded,
}

/// `GET /v2/health/live`.
#[derive(Serialize, ToSchema)]
pub struct OipLive {
    /// Always `true` while the process answers.
    pub live: bool,
}

/// `GET /v2/health/ready`: 200 with `true`, 503 with `false`.
#[derive(Serialize, ToSchema)]
pub struct OipReady {
    /// As `GET /ready`'s status.
    pub ready: bool,
}

/// `GET /v2`: server metadata.
#[derive(Serialize, ToSchema)]
pub struct OipServerMetadata {
    /// `infergate`.
    pub name: String,
    /// The gateway's version.
    pub version: String,
    /// The protocol extensions served: `classification`, `binary_tensor_data`.
    pub extensions: Vec<String>,
}

/// `GET /v2/models/{model}[/versions/{version}]`: the model's metadata. A model that serves
/// nothing (it failed to load, or was unloaded) has no versions and no tensors, and says
/// why in `state` and `reason`.
#[derive(Serialize, ToSchema)]
pub struct OipModelMetadata {
    /// The model's name.
    pub name: String,
    /// Its versions loaded (the one named, when the path names one).
    pub versions: Vec<String>,
    /// `infergate`.
    pub platform: String,
    /// Its input: `features` (FP32, `[-1, F]`) or `image` (BYTES, `[-1]`).
    pub inputs: Vec<OipTensorMetadata>,
    /// Its output: `probabilities` (FP32, `[-1, classes]`).
    pub outputs: Vec<OipTensorMetadata>,
    /// Only when some version does not serve: as the repository index says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ModelState>,
    /// Only when some version does not serve: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A tensor in a model's metadata.
#[derive(Serialize, ToSchema)]
pub struct OipTensorMetadata {
    /// Its name.
    pub name: String,
    /// Its datatype.
    pub datatype: TensorDatatype,
    /// Its shape; -1: any size.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{model}[/versions/{version}]/ready`: 200 when ready, 503 when not.
#[derive(Serialize, ToSchema)]
pub struct OipModelReady {
    /// The model named.
    pub name: String,
    /// The version named; `null` when the path names none.
    pub version: Option<String>,
    /// It serves (that version, when one is named) and the gateway is ready.
    pub ready: bool,
}

/// The protocol's tensor datatypes; every numeric one is read as FP32.
#[derive(Serialize, ToSchema)]
pub enum TensorDatatype {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "UINT16")]
    Uint16,
    #[serde(rename = "UINT32")]
    Uint32,
    #[serde(rename = "UINT64")]
    Uint64,
    #[serde(rename = "INT8")]
    Int8,
    #[serde(rename = "INT16")]
    Int16,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "FP16")]
    Fp16,
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    /// Strings or encoded files.
    #[serde(rename = "BYTES")]
    Bytes,
}

/// The optional body of a repository load or unload: any object, ignored.
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct RepositoryModelRequest(pub serde_json::Map<String, serde_json::Value>);

/// The answer to a repository load or unload: `{}`.
#[derive(Serialize, ToSchema)]
pub struct RepositoryModelDone {}

/// `POST /predict` as `multipart/form-data`: the image in `file`, optionally `model`.
#[derive(Serialize, ToSchema)]
pub struct PredictUpload {
    /// The image file: JPEG, PNG or WebP.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Picks a model by name (before the query's `model`).
    #[schema(value_type = String, required = false)]
    pub model: Option<String>,
}

/// Bytes as they are: an image body, or a binary tensor data body.
#[derive(Serialize, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryBody(pub Vec<u8>);
