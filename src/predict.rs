//! The read-through from a decoded request to an answer, in request-path order:
//! model choice and input check → cache key → L1 → L2 → batcher → model → encode, all
//! within the request deadline. Identical concurrent misses share one flight through L2
//! and the model (the coalescer wraps the L2 lookup too, so N identical requests cost one
//! Redis GET, not N). Every answer is handed to the prediction log (a `try_send`, never a
//! wait) with the `prediction_id` the client gets.
//!
//! Knows nothing of HTTP: handlers call it after decoding and wrap what it returns.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::batch::Batcher;
use crate::cache::CachedAnswer;
use crate::cache::key::{CacheKey, Input};
use crate::cache::l1::L1;
use crate::cache::l2::{L2, Lookup};
use crate::coalesce::{Coalescer, Role};
use crate::infer::model::Model;
use crate::infer::{Infer, InferError};
use crate::metrics::{CACHE_REQUESTS_TOTAL, COALESCED_TOTAL};
use crate::prediction_log::PredictionLog;
use crate::prediction_log::record::{LogRow, LoggedInput};
use crate::stats::{Source, Stats};

/// A decoded, type-checked tabular request (finite numbers, at least one).
#[derive(Debug, Clone, PartialEq)]
pub struct TabularInput {
    /// Model picked by name; `None` is the default model.
    pub model: Option<String>,
    /// The feature values.
    pub features: Vec<f32>,
    /// Length of the array the client sent (may exceed `features.len()` for huge arrays).
    pub len: usize,
}

/// Per-request choices and facts that are not part of the input.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// `Cache-Control: no-cache`: skip the lookup, compute, still fill the cache.
    pub bypass_cache: bool,
    /// The request's id, for the log.
    pub request_id: String,
    /// The client's address, for the log (stored only when configured).
    pub client_addr: Option<IpAddr>,
    /// When the request head arrived (the log's latency is measured from here).
    pub received: tokio::time::Instant,
}

/// Where an answer came from: the `X-Cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the in-process cache.
    HitL1,
    /// From Redis.
    HitL2,
    /// Computed by the model for this request.
    Miss,
    /// Computed for an identical request in flight at the same time.
    Coalesced,
    /// Computed because the client asked to bypass the cache.
    Bypass,
}

impl CacheStatus {
    /// The `X-Cache` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HitL1 => "hit-l1",
            Self::HitL2 => "hit-l2",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Bypass => "bypass",
        }
    }

    /// Whether the answer was served from a cache (the JSON `cached` member).
    pub fn is_cached(self) -> bool {
        matches!(self, Self::HitL1 | Self::HitL2)
    }

    fn source(self) -> Source {
        match self {
            Self::HitL1 => Source::L1,
            Self::HitL2 => Source::L2,
            Self::Miss => Source::Computed,
            Self::Coalesced => Source::Coalesced,
            Self::Bypass => Source::Bypass,
        }
    }
}

/// An answer computed by the model, as shared with coalesced followers.
#[derive(Debug, Clone)]
struct Computed {
    answer: CachedAnswer,
    /// Where the flight's leader found it: `HitL1` (filled meanwhile), `HitL2` or `Miss`.
    status: CacheStatus,
    queue_wait: Duration,
    compute: Duration,
    batch_size: usize,
}

/// One answered prediction.
pub struct Prediction {
    /// UUIDv7 made here, returned to the client and written to the log.
    pub prediction_id: Uuid,
    /// The model that answered.
    pub model: Arc<dyn Model>,
    /// The encoded, cacheable part of the answer.
    pub answer: CachedAnswer,
    /// Where the answer came from.
    pub cache: CacheStatus,
    /// Time the batch waited for a compute thread (zero for a cache hit).
    pub queue_wait: Duration,
    /// Time of the forward pass (zero for a cache hit).
    pub compute: Duration,
    /// Rows in the forward pass that computed it (zero for a cache hit).
    pub batch_size: usize,
}

/// Why a prediction was not made.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The input does not have the model's feature count.
    #[error("expected {expected} features, got {got}")]
    FeatureCount {
        expected: usize,
        got: usize,
        names: Vec<String>,
    },
    /// The request deadline passed before the model answered.
    #[error("no answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// The model could not be picked.
    #[error(transparent)]
    Model(#[from] InferError),
    /// The inference (possibly shared with identical requests) failed.
    #[error(transparent)]
    Infer(Arc<InferError>),
}

/// How the predictor behaves.
#[derive(Debug, Clone, Copy)]
pub struct PredictConfig {
    /// Longest a prediction may take, cache and queue included.
    pub deadline: Duration,
    /// Whether identical concurrent misses share one inference.
    pub coalesce: bool,
    /// Whether the log stores the client's address.
    pub log_client_addr: bool,
}

/// The parts a predictor is built from.
pub struct PredictorParts {
    /// The models.
    pub infer: Arc<Infer>,
    /// The batching loop in front of the compute threads.
    pub batcher: Batcher,
    /// The in-process cache; `None` when caching is off.
    pub l1: Option<L1>,
    /// Redis; `None` when no `redis.url` is configured (or caching is off).
    pub l2: Option<Arc<L2>>,
    /// Counters for `/stats`.
    pub stats: Arc<Stats>,
    /// The prediction log; `None` when no database is configured.
    pub log: Option<Arc<PredictionLog>>,
}

/// Runs predictions; one per process, shared by every I/O thread.
pub struct Predictor {
    infer: Arc<Infer>,
    batcher: Batcher,
    l1: Option<L1>,
    l2: Option<Arc<L2>>,
    coalescer: Coalescer<Computed, Arc<InferError>>,
    stats: Arc<Stats>,
    log: Option<Arc<PredictionLog>>,
    cfg: PredictConfig,
}

impl Predictor {
    /// A predictor from its parts.
    pub fn new(parts: PredictorParts, cfg: PredictConfig) -> Self {
        Self {
            infer: parts.infer,
            batcher: parts.batcher,
            l1: parts.l1,
            l2: parts.l2,
            coalescer: Coalescer::new(),
            stats: parts.stats,
            log: parts.log,
            cfg,
        }
    }

    /// Redis as `/ready` reports it: `ok`, `down` (circuit open) or `disabled`.
    pub fn redis_status(&self) -> &'static str {
        match &self.l2 {
            None => "disabled",
            Some(l2) if l2.is_down() => "down",
            Some(_) => "ok",
        }
    }

    /// The prediction log, when one is configured.
    pub fn log(&self) -> Option<&Arc<PredictionLog>> {
        self.log.as_ref()
    }

    /// Predicts a tabular input.
    pub async fn tabular(
        &self,
        input: TabularInput,
        opts: RequestOptions,
    ) -> Result<Prediction, PredictError> {
        let model = Arc::clone(self.infer.model(input.model.as_deref())?);
        let manifest = model.manifest();
        let expected = manifest.n_features();
        if input.len != expected {
            return Err(PredictError::FeatureCount {
                expected,
                got: input.len,
                names: manifest.feature_names.clone(),
            });
        }
        let key = CacheKey::new(
            &manifest.name,
            &manifest.version,
            Input::Features(&input.features),
        );
        // The log keeps the features only when a log exists; the model takes the vector.
        let logged = self.log.as_ref().map(|_| input.features.clone());
        let work = self.read_through(&model, &key, input.features, opts.bypass_cache);
        let (computed, cache) = tokio::time::timeout(self.cfg.deadline, work)
            .await
            .map_err(|_| PredictError::Timeout {
                timeout_ms: self.cfg.deadline.as_millis() as u64,
            })?
            .map_err(PredictError::Infer)?;
        self.stats
            .record_prediction(computed.answer.confidence, cache.source());
        let prediction_id = Uuid::now_v7();
        if let (Some(log), Some(features)) = (&self.log, logged) {
            log.submit(LogRow {
                prediction_id,
                request_id: opts.request_id,
                created_at: SystemTime::now(),
                model_name: manifest.name.clone(),
                model_version: manifest.version.clone(),
                cache_status: cache.as_str(),
                input_hash: key.hash(),
                input: LoggedInput::Features(features),
                answer: computed.answer.body.clone(),
                confidence: computed.answer.confidence,
                latency: opts.received.elapsed(),
                client_addr: opts.client_addr.filter(|_| self.cfg.log_client_addr),
            });
        }
        Ok(Prediction {
            prediction_id,
            model,
            answer: computed.answer,
            cache,
            queue_wait: computed.queue_wait,
            compute: computed.compute,
            batch_size: computed.batch_size,
        })
    }

    async fn read_through(
        &self,
        model: &Arc<dyn Model>,
        key: &CacheKey,
        features: Vec<f32>,
        bypass_cache: bool,
    ) -> Result<(Computed, CacheStatus), Arc<InferError>> {
        if bypass_cache {
            let tiers = [("l1", self.l1.is_some()), ("l2", self.l2.is_some())];
            for (tier, _) in tiers.into_iter().filter(|(_, on)| *on) {
                metrics::counter!(CACHE_REQUESTS_TOTAL, "tier" => tier, "result" => "bypass")
                    .increment(1);
            }
            return Ok((
                self.compute(model, key, features).await?,
                CacheStatus::Bypass,
            ));
        }
        if let Some(hit) = self.lookup(key) {
            return Ok((hit, CacheStatus::HitL1));
        }
        if !self.cfg.coalesce {
            let computed = self.miss(model, key, features).await?;
            let status = computed.status;
            return Ok((computed, status));
        }
        let (outcome, role) = self
            .coalescer
            .run(key.hash(), || async {
                // Double-checked: the flight before ours may have filled the cache between
                // our lookup and our taking the lead.
                match self.l1.as_ref().and_then(|l1| l1.get(key)) {
                    Some(answer) => Ok(cached(answer, CacheStatus::HitL1)),
                    None => self.miss(model, key, features.clone()).await,
                }
            })
            .await;
        let computed = outcome?;
        let status = match (role, computed.status) {
            (Role::Leader, status) => status,
            // Followers of a cache hit got cached data; followers of a computation did not.
            (Role::Follower, CacheStatus::HitL1 | CacheStatus::HitL2) => computed.status,
            (Role::Follower, _) => {
                metrics::counter!(COALESCED_TOTAL).increment(1);
                CacheStatus::Coalesced
            }
        };
        Ok((computed, status))
    }

    /// After an L1 miss: Redis, then the model.
    async fn miss(
        &self,
        model: &Arc<dyn Model>,
        key: &CacheKey,
        features: Vec<f32>,
    ) -> Result<Computed, Arc<InferError>> {
        if let Some(l2) = &self.l2 {
            let lookup = l2.get(key).await;
            let result = match &lookup {
                Lookup::Hit(_) => "hit",
                Lookup::Miss => "miss",
                Lookup::Skipped => "skipped",
                Lookup::Failed => "error",
            };
            metrics::counter!(CACHE_REQUESTS_TOTAL, "tier" => "l2", "result" => result)
                .increment(1);
            if let Lookup::Hit(answer) = lookup {
                if let Some(l1) = &self.l1 {
                    l1.insert(key, answer.clone());
                }
                return Ok(cached(answer, CacheStatus::HitL2));
            }
        }
        self.compute(model, key, features).await
    }

    fn lookup(&self, key: &CacheKey) -> Option<Computed> {
        let l1 = self.l1.as_ref()?;
        let hit = l1.get(key);
        let result = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!(CACHE_REQUESTS_TOTAL, "tier" => "l1", "result" => result).increment(1);
        hit.map(|answer| cached(answer, CacheStatus::HitL1))
    }

    async fn compute(
        &self,
        model: &Arc<dyn Model>,
        key: &CacheKey,
        features: Vec<f32>,
    ) -> Result<Computed, Arc<InferError>> {
        let row = self.batcher.predict(model, features).await?;
        let answer = crate::encode::tabular(model.manifest(), &row.probs);
        if let Some(l1) = &self.l1 {
            l1.insert(key, answer.clone());
        }
        if let Some(l2) = &self.l2 {
            l2.set(key, &answer);
        }
        Ok(Computed {
            answer,
            status: CacheStatus::Miss,
            queue_wait: row.queue_wait,
            compute: row.compute,
            batch_size: row.batch_size,
        })
    }
}

fn cached(answer: CachedAnswer, status: CacheStatus) -> Computed {
    Computed {
        answer,
        status,
        queue_wait: Duration::ZERO,
        compute: Duration::ZERO,
        batch_size: 0,
    }
}
