//! The JSON answers of readiness, `/stats`, the Open Inference Protocol's health and
//! metadata and the model repository's load and unload: the types the handlers serialize
//! and the OpenAPI document describes, one and the same (`/health`'s is
//! `readiness::Health`, `/predict`'s `encode::PredictAnswer`, the OIP's inference answer
//! in `http::tensor`).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::admission::GateSnapshot;
use crate::http::tensor::Datatype;
use crate::infer::manifest::device_name;
use crate::infer::registry::Served;
use crate::prediction_log::{PredictionLog, SinkCounters};
use crate::readiness::{DependencyState, Readiness};
use crate::repository::demand::OnDemandStats;
use crate::state::Gateway;
use crate::stats::{Snapshot, Source};

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
    pub io_backend: &'static str,
    /// Where image models run: `cpu`, or a GPU (`cuda:0`) in a cuda build that found one.
    pub image_device: String,
    /// What readiness was decided from.
    pub checks: ReadyChecks,
    /// The dependencies in `ready.require` that are down (`redis`, `database`).
    pub required_down: Vec<&'static str>,
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
    pub redis: DependencyState,
    /// The prediction log's database; as `redis`.
    pub database: DependencyState,
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

impl Ready {
    /// `readiness` as `/ready` shows it, with each model's state: a model that failed to
    /// load is reported here and in its own `/v2/models/{m}/ready`, and never makes the
    /// others' replica unready.
    pub fn new(readiness: &Readiness, gw: &Gateway) -> Self {
        let models = gw
            .serving
            .infer
            .catalog()
            .models()
            .iter()
            .map(|m| (m.name.clone(), ModelCheck::of(m)))
            .collect();
        Self {
            status: if readiness.is_ready() {
                ReadyStatus::Ready
            } else {
                ReadyStatus::NotReady
            },
            draining: readiness.draining,
            listening: readiness.listening,
            io_backend: gw.lifecycle.io_backend.as_str(),
            image_device: device_name(gw.lifecycle.image_device),
            checks: ReadyChecks {
                model: if readiness.warm {
                    WarmUp::Ok
                } else {
                    WarmUp::WarmingUp
                },
                models,
                redis: readiness.redis,
                database: readiness.database,
            },
            required_down: readiness.required_down.clone(),
        }
    }
}

impl ModelCheck {
    fn of(served: &Served) -> Self {
        match served.state() {
            "READY" => Self::Ok,
            "UNLOADED" => Self::Unloaded,
            _ => Self::Unavailable,
        }
    }
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
    pub cache: &'static str,
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
    pub io_backend: &'static str,
    /// Where image models run: `cpu`, or a GPU (`cuda:0`) in a cuda build that found one.
    pub image_device: String,
    /// API keys in force; `null` when the gateway is open (no key file).
    pub api_keys: Option<u64>,
    /// Rate limiting.
    pub rate_limit: RateLimitStats,
    /// Each model's adaptive concurrency limit (empty with `admission.adaptive = false`).
    pub admission: Vec<AdmissionGate>,
    /// Every model the repository knows, serving or not.
    pub models: Vec<ModelStats>,
    /// Versions loaded on demand: memory, loads and evictions; `null` without a
    /// repository.
    pub on_demand: Option<OnDemandBody>,
    /// Seconds since the process started.
    pub uptime_s: u64,
}

/// `on_demand` of `GET /stats`.
#[derive(Serialize, ToSchema)]
pub struct OnDemandBody {
    /// `repository.memory_budget_bytes`; 0: no budget.
    pub budget_bytes: u64,
    /// What the versions in memory took at their loads, in all.
    pub resident_bytes: u64,
    /// Versions on demand in memory now.
    pub loaded: u64,
    /// Versions served on demand, in memory or not.
    pub listed: u64,
    /// Loads that ended with the version serving, since start.
    pub loads: u64,
    /// Loads that failed, since start.
    pub load_failures: u64,
    /// Versions unloaded to make room, since start.
    pub evicted_for_memory: u64,
    /// Versions unloaded after their `idle_unload_s`, since start.
    pub evicted_idle: u64,
}

impl From<OnDemandStats> for OnDemandBody {
    fn from(s: OnDemandStats) -> Self {
        Self {
            budget_bytes: s.budget_bytes,
            resident_bytes: s.resident_bytes,
            loaded: s.loaded as u64,
            listed: s.listed as u64,
            loads: s.totals.loads,
            load_failures: s.totals.load_failures,
            evicted_for_memory: s.totals.evicted_for_memory,
            evicted_idle: s.totals.evicted_idle,
        }
    }
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
    pub status: DependencyState,
    /// Rows written to the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
    /// Rows spooled to disk while the database was away.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_spooled: Option<u64>,
    /// Spooled rows written since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_replayed: Option<u64>,
    /// Rows lost (queue and spool full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_dropped: Option<u64>,
    /// Rows waiting in the writer's queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// Bytes in the spool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_bytes: Option<u64>,
    /// Spool segments found torn (cut short by a crash) and skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    pub model: &'static str,
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
    #[schema(value_type = ModelState)]
    pub state: &'static str,
    /// Why it does not serve; `null` when it does.
    pub reason: Option<String>,
}

/// A model's state, as Triton's repository index names them.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ModelState {
    /// Serving (on demand: in memory).
    Ready,
    /// It failed to load (on demand: lately, or it does not fit the memory budget).
    Unavailable,
    /// Being loaded (on demand: asked for by a request).
    Loading,
    /// Unloaded through the repository API; on demand: listed and not in memory, loaded by
    /// the next request that needs it.
    Unloaded,
}

/// The prediction totals `/stats` shows, and where they come from.
struct Totals {
    total: u64,
    last_hour: u64,
    average: f64,
    source: PredictionsSource,
}

impl Stats {
    /// The counters now. With a prediction log, the prediction totals come from the table
    /// (a reading at most `prediction_log.stats_cache_ms` old); without one, or while
    /// Postgres has never answered, from this process's memory.
    pub async fn of(gw: &Gateway) -> Self {
        let s = gw.lifecycle.stats.snapshot();
        let log = gw.lifecycle.log.as_ref();
        let totals = Totals::of(log.map(|log| &**log), &s).await;
        let catalog = gw.serving.infer.catalog();
        Self {
            total_predictions: totals.total,
            predictions_last_hour: totals.last_hour,
            average_confidence: totals.average,
            predictions_source: totals.source,
            served_by_this_process: s.total_predictions,
            prediction_log: match log {
                None => PredictionLogStats::disabled(),
                Some(log) => PredictionLogStats::of(DependencyState::database(gw), log.counters()),
            },
            cache: gw.lifecycle.cache_mode.as_str(),
            cache_hits: s.cache_hits(),
            cache_misses: s.cache_misses(),
            cache_hit_rate: s.cache_hit_rate(),
            cache_hits_l1: s.from_source(Source::L1),
            cache_hits_l2: s.from_source(Source::L2),
            coalesced: s.from_source(Source::Coalesced),
            cache_bypassed: s.from_source(Source::Bypass),
            batches: BatchStats::of(&s),
            inference_queue_depth: gw.serving.infer.queue_depth() as u64,
            connections_active: gw.lifecycle.shutdown.open_connections() as u64,
            listening: gw.lifecycle.flags.is_listening(),
            io_backend: gw.lifecycle.io_backend.as_str(),
            image_device: device_name(gw.lifecycle.image_device),
            api_keys: gw.serving.auth.keys().map(|k| k.len() as u64),
            rate_limit: RateLimitStats {
                on: gw.serving.rate_limits.is_on(),
                tracked_clients: gw.serving.rate_limits.tracked() as u64,
            },
            admission: gw
                .lifecycle
                .admission
                .snapshot()
                .into_iter()
                .map(AdmissionGate::from)
                .collect(),
            models: catalog.models().iter().map(ModelStats::of).collect(),
            on_demand: gw
                .lifecycle
                .repository
                .as_ref()
                .map(|r| r.on_demand_stats().into()),
            uptime_s: s.uptime_s,
        }
    }
}

impl Totals {
    async fn of(log: Option<&PredictionLog>, s: &Snapshot) -> Self {
        let memory = Self {
            total: s.total_predictions,
            last_hour: s.predictions_last_hour,
            average: s.average_confidence,
            source: PredictionsSource::Memory,
        };
        let Some(log) = log else { return memory };
        match log.db_counts().await {
            Some((db, fresh)) => Self {
                total: db.total_predictions.max(0) as u64,
                last_hour: db.predictions_last_hour.max(0) as u64,
                average: db.average_confidence,
                source: if fresh {
                    PredictionsSource::Database
                } else {
                    PredictionsSource::DatabaseStale
                },
            },
            None => memory,
        }
    }
}

impl PredictionLogStats {
    fn disabled() -> Self {
        Self::of_parts(DependencyState::Disabled, None)
    }

    fn of(status: DependencyState, c: SinkCounters) -> Self {
        Self::of_parts(status, Some(c))
    }

    fn of_parts(status: DependencyState, c: Option<SinkCounters>) -> Self {
        Self {
            status,
            rows_written: c.map(|c| c.written),
            rows_spooled: c.map(|c| c.spooled),
            rows_replayed: c.map(|c| c.replayed),
            rows_dropped: c.map(|c| c.dropped),
            queue_depth: c.map(|c| c.queued),
            spool_bytes: c.map(|c| c.spool_bytes),
            spool_torn_segments: c.map(|c| c.torn_segments),
        }
    }
}

impl BatchStats {
    fn of(s: &Snapshot) -> Self {
        Self {
            count: s.batches,
            rows: s.batched_rows,
            mean_size: if s.batches == 0 {
                0.0
            } else {
                s.batched_rows as f64 / s.batches as f64
            },
            max_size: s.largest_batch,
        }
    }
}

impl From<GateSnapshot> for AdmissionGate {
    fn from(g: GateSnapshot) -> Self {
        Self {
            model: g.model,
            limit: g.limit as u64,
            in_flight: g.in_flight as u64,
            baseline_ms: g.baseline_ms,
        }
    }
}

impl ModelStats {
    fn of(m: &Served) -> Self {
        let versions: Vec<String> = m
            .versions
            .iter()
            .map(|v| v.info().version.to_string())
            .collect();
        Self {
            name: m.name.clone(),
            version: versions.first().cloned(),
            versions,
            state: m.state(),
            reason: m.problem.as_ref().map(|p| p.reason().to_owned()),
        }
    }
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
    pub name: &'static str,
    /// The gateway's version.
    pub version: &'static str,
    /// The protocol extensions served: `classification`, `binary_tensor_data`.
    pub extensions: Vec<&'static str>,
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
    pub platform: &'static str,
    /// Its input: `features` (FP32, `[-1, F]`) or `image` (BYTES, `[-1]`).
    pub inputs: Vec<OipTensorMetadata>,
    /// Its output: `probabilities` (FP32, `[-1, classes]`).
    pub outputs: Vec<OipTensorMetadata>,
    /// Only when some version does not serve: as the repository index says.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ModelState>)]
    pub state: Option<&'static str>,
    /// Only when some version does not serve: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where its forward passes run: `cpu`, or a GPU (`cuda:0`); absent when it does not
    /// serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The number format it computes in: `f32`, `f16` or `bf16` (an image model's
    /// `precision`); absent when it does not serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<&'static str>,
}

/// A tensor in a model's metadata.
#[derive(Serialize, ToSchema)]
pub struct OipTensorMetadata {
    /// Its name.
    pub name: String,
    /// Its datatype.
    pub datatype: Datatype,
    /// Its shape; -1: any size.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{model}[/versions/{version}]/ready`: 200 when ready, 503 when not.
#[derive(Serialize, ToSchema)]
pub struct OipModelReady<'a> {
    /// The model named.
    pub name: &'a str,
    /// The version named; `null` when the path names none.
    pub version: Option<&'a str>,
    /// It serves (that version, when one is named) and the gateway is ready.
    pub ready: bool,
}

/// The answer to a repository load or unload: `{}`.
#[derive(Serialize, ToSchema)]
pub struct RepositoryModelDone {}
