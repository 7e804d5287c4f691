//! The read-through from a decoded request to an answer, in request-path order:
//! model choice and input check → cache key → L1 → L2 → (images: decode + preprocess on
//! the decode threads) → batcher → model → encode, all within the request deadline. Tabular
//! and image inputs share every step; an image's cache key is over its raw bytes, so a hit
//! costs no decoding. Identical concurrent misses share one flight through L2
//! and the model (the coalescer wraps the L2 lookup too, so N identical requests cost one
//! Redis GET, not N). Every answer is handed to the prediction log (a `try_send`, never a
//! wait) with the `prediction_id` the client gets.
//!
//! Knows nothing of HTTP: handlers call it after decoding and wrap what it returns.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uuid::Uuid;

use crate::admission::{Admission, Shed, ShedReason, count_shed};
use crate::batch::Batcher;
use crate::cache::CachedAnswer;
use crate::cache::key::{CacheKey, Input};
use crate::cache::l1::L1;
use crate::cache::l2::{L2, Lookup};
use crate::coalesce::{Coalescer, Role, Shareable};
use crate::deadline::{Deadline, Stage};
use crate::ids::uuid_v7;
use crate::imaging::decode::Format;
use crate::imaging::{ImageError, Imaging};
use crate::infer::manifest::{InputKind, InputSpec, Preprocess, Task};
use crate::infer::model::Model;
use crate::infer::model::on_demand::NotResident;
use crate::infer::{Infer, InferError};
use crate::metrics::{CACHE_REQUESTS_TOTAL, COALESCED_TOTAL};
use crate::prediction_log::PredictionLog;
use crate::prediction_log::record::{LogRow, LoggedInput};
use crate::shadow::{Shadow, ShadowInput, ShadowJob};
use crate::stats::{Source, Stats};
use crate::trace_context::TraceContext;

/// A decoded, type-checked tabular request (finite numbers, at least one).
#[derive(Debug, Clone, PartialEq)]
pub struct TabularInput {
    /// Model picked by name; `None` is the default model.
    pub model: Option<String>,
    /// Version picked; `None`: as the model's traffic split says, else its newest.
    pub version: Option<String>,
    /// The feature values; NaN for a missing one.
    pub features: Vec<f32>,
    /// Length of the array the client sent (may exceed `features.len()` for huge arrays).
    pub len: usize,
    /// The index of the first missing value (JSON `null`), if any.
    pub missing: Option<usize>,
}

/// An uploaded image, as the client sent it.
#[derive(Debug, Clone)]
pub struct ImageInput {
    /// Model picked by name; `None` is the default image model.
    pub model: Option<String>,
    /// Version picked; `None`: as the model's traffic split says, else its newest.
    pub version: Option<String>,
    /// The file's bytes.
    pub bytes: Bytes,
}

/// An input on its way to the model: what a flight needs to compute it.
#[derive(Debug, Clone)]
enum Pending {
    Features(Vec<f32>),
    Image {
        bytes: Bytes,
        format: Format,
        preprocess: Preprocess,
    },
}

/// Per-request choices and facts that are not part of the input.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// `Cache-Control: no-cache`: skip the lookup, compute, still fill the cache.
    pub bypass_cache: bool,
    /// The request's id, for the log (shared: a row and each of an OIP request's rows
    /// take it without a copy).
    pub request_id: Arc<str>,
    /// The client's address, for the log (stored only when configured).
    pub client_addr: Option<IpAddr>,
    /// When the request head arrived (the log's latency is measured from here).
    pub received: tokio::time::Instant,
    /// The name of the API key the request came with, for the log.
    pub api_key: Option<Arc<str>>,
    /// When the answer is due; work still queued then is dropped, never computed.
    pub deadline: Deadline,
    /// The request's W3C trace, for the log.
    pub trace: TraceContext,
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
    decode: Duration,
    preprocess: Duration,
    /// Time waited for a version loaded on demand to load (`None`: it was in memory).
    load: Option<Duration>,
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
    /// Time decoding the upload (images computed for this request only).
    pub decode: Duration,
    /// Time resizing, cropping and normalizing it (likewise).
    pub preprocess: Duration,
    /// Time waited for the model to load on demand (a cold request's); `None` when it was
    /// in memory or the answer came from a cache.
    pub load: Option<Duration>,
}

/// Why a flight (shared by identical requests) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlightError {
    /// The inference failed.
    #[error(transparent)]
    Infer(Arc<InferError>),
    /// The upload could not be decoded.
    #[error(transparent)]
    Image(ImageError),
    /// Admission shed the work (the model's limit, or too little time left).
    #[error(transparent)]
    Shed(Shed),
    /// The model computed no number (NaN or infinity) from this input: finite features so
    /// far outside what it takes that its arithmetic overflowed. Never cached nor logged.
    #[error("model {model:?} computes no number from this input")]
    NonFiniteOutput { model: String },
}

impl Shareable for FlightError {
    /// A deadline is the leader's own: identical requests with more time left take the
    /// flight over instead of sharing the leader's 504.
    fn shareable(&self) -> bool {
        !self.is_deadline()
    }
}

impl FlightError {
    fn is_deadline(&self) -> bool {
        match self {
            Self::Shed(Shed::Deadline { .. }) => true,
            Self::Infer(e) => matches!(
                **e,
                InferError::DeadlineExceeded | InferError::NotResident(NotResident::Deadline)
            ),
            _ => false,
        }
    }

    /// A fixed queue (batcher, compute, decode) was full.
    fn is_queue_full(&self) -> bool {
        match self {
            Self::Infer(e) => matches!(**e, InferError::Overloaded { .. }),
            Self::Image(e) => matches!(e, ImageError::Overloaded { .. }),
            Self::Shed(_) | Self::NonFiniteOutput { .. } => false,
        }
    }
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
    /// A feature is missing (`null`) and the model takes no missing values.
    #[error("features[{index}] is missing; model {model:?} takes no missing values")]
    MissingFeature { index: usize, model: String },
    /// The request's deadline passed (or too little of it was left) before an answer.
    #[error("no answer within the request's {budget_ms} ms")]
    DeadlineExceeded { budget_ms: u64 },
    /// The model could not be picked.
    #[error(transparent)]
    Model(#[from] InferError),
    /// The upload is not an acceptable image (found before any decoding).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The flight (possibly shared with identical requests) failed.
    #[error(transparent)]
    Flight(FlightError),
}

/// How the predictor behaves.
#[derive(Debug, Clone, Copy)]
pub struct PredictSettings {
    /// Whether identical concurrent misses share one inference.
    pub coalesce: bool,
    /// Whether the log stores the client's address.
    pub log_client_addr: bool,
}

/// What a predictor reads through: the models, the caches, the queues and the side paths
/// (kept whole inside the [`Predictor`], private: the request path predicts through it and
/// reaches none of them directly).
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
    /// The decode threads; `None` when no image model is loaded.
    pub imaging: Option<Arc<Imaging>>,
    /// The runner that mirrors requests to shadow versions.
    pub shadow: Arc<Shadow>,
    /// The adaptive concurrency limit in front of each model.
    pub admission: Arc<Admission>,
}

/// Runs predictions; one per process, shared by every I/O thread.
pub struct Predictor {
    parts: PredictorParts,
    coalescer: Coalescer<Computed, FlightError>,
    /// L1 hit and miss counters, resolved once: they count every request.
    l1_counts: [metrics::Counter; 2],
    cfg: PredictSettings,
}

impl Predictor {
    /// A predictor from its parts.
    pub fn new(parts: PredictorParts, cfg: PredictSettings) -> Self {
        Self {
            parts,
            coalescer: Coalescer::new(),
            l1_counts: ["hit", "miss"].map(|result| {
                metrics::counter!(CACHE_REQUESTS_TOTAL, "tier" => "l1", "result" => result)
            }),
            cfg,
        }
    }

    /// Predicts a tabular input.
    pub async fn tabular(
        &self,
        input: TabularInput,
        opts: RequestOptions,
    ) -> Result<Prediction, PredictError> {
        self.numbers(input, InputKind::Features, opts).await
    }

    /// Predicts one row of a tensor model: every input's row, in the model's order
    /// (`features`), as the Open Inference Protocol's handler assembled it.
    pub async fn tensors(
        &self,
        input: TabularInput,
        opts: RequestOptions,
    ) -> Result<Prediction, PredictError> {
        self.numbers(input, InputKind::Tensors, opts).await
    }

    /// A row of numbers, for a model of `kind` (features or tensors).
    async fn numbers(
        &self,
        input: TabularInput,
        kind: InputKind,
        opts: RequestOptions,
    ) -> Result<Prediction, PredictError> {
        let chosen =
            self.parts
                .infer
                .choose(input.model.as_deref(), input.version.as_deref(), kind)?;
        let model = chosen.model;
        let info = model.info();
        let expected = info.row_len();
        if input.len != expected {
            let names = match &info.input {
                InputSpec::Features { names } => names.clone(),
                InputSpec::Image(_) | InputSpec::Tensors(_) => Vec::new(),
            };
            return Err(PredictError::FeatureCount {
                expected,
                got: input.len,
                names,
            });
        }
        if let Some(index) = input.missing.filter(|_| !info.takes_missing) {
            return Err(PredictError::MissingFeature {
                index,
                model: info.name.to_string(),
            });
        }
        let key = CacheKey::for_model(info, Input::Features(&input.features));
        // The log keeps the features only when a log exists; the model takes the vector.
        let logged = self
            .parts
            .log
            .as_ref()
            .map(|_| LoggedInput::Features(input.features.clone()));
        let shadow = chosen
            .shadow
            .map(|candidate| (candidate, ShadowInput::Features(input.features.clone())));
        let pending = Pending::Features(input.features);
        self.predict(model, key, pending, logged, shadow, opts)
            .await
    }

    /// Classifies an uploaded image. The format and the header's dimensions are checked
    /// here; decoding happens only on a cache miss, on a decode thread.
    pub async fn image(
        &self,
        input: ImageInput,
        opts: RequestOptions,
    ) -> Result<Prediction, PredictError> {
        let chosen = self.parts.infer.choose(
            input.model.as_deref(),
            input.version.as_deref(),
            InputKind::Image,
        )?;
        let model = chosen.model;
        let info = model.info();
        let (InputSpec::Image(preprocess), Some(imaging)) = (&info.input, &self.parts.imaging)
        else {
            return Err(PredictError::Image(ImageError::Stopped));
        };
        let format = imaging.validate(&input.bytes)?;
        let key = CacheKey::for_model(info, Input::Image(&input.bytes));
        let logged = self.parts.log.as_ref().map(|_| LoggedInput::Image {
            bytes: input.bytes.len(),
        });
        let shadow = chosen.shadow.map(|candidate| {
            let input = ShadowInput::Image {
                bytes: input.bytes.clone(),
                format,
            };
            (candidate, input)
        });
        let pending = Pending::Image {
            bytes: input.bytes,
            format,
            preprocess: *preprocess,
        };
        self.predict(model, key, pending, logged, shadow, opts)
            .await
    }

    /// The shared tail of every prediction: the read-through under the deadline, stats,
    /// the log row (handed to the shadow runner with the input when the request is
    /// mirrored, which submits it with the comparison).
    async fn predict(
        &self,
        model: Arc<dyn Model>,
        key: CacheKey,
        pending: Pending,
        logged: Option<LoggedInput>,
        shadow: Option<(Arc<dyn Model>, ShadowInput)>,
        opts: RequestOptions,
    ) -> Result<Prediction, PredictError> {
        let deadline = opts.deadline;
        let expired = || PredictError::DeadlineExceeded {
            budget_ms: deadline.budget().as_millis() as u64,
        };
        if deadline.expired(tokio::time::Instant::now()) {
            Stage::Admission.count();
            return Err(expired());
        }
        let work = self.read_through(&model, &key, pending, opts.bypass_cache, &deadline);
        let (computed, cache) = match tokio::time::timeout_at(deadline.at(), work).await {
            Err(_) => {
                Stage::Waiting.count();
                return Err(expired());
            }
            Ok(Err(e)) if e.is_deadline() => return Err(expired()),
            Ok(outcome) => outcome.map_err(PredictError::Flight)?,
        };
        self.parts.stats.record_prediction(
            computed.answer.confidence,
            cache.source(),
            opts.received.elapsed(),
        );
        let prediction_id = uuid_v7();
        let row = logged.map(|input| {
            let info = model.info();
            LogRow {
                prediction_id,
                request_id: opts.request_id,
                created_at: SystemTime::now(),
                model_name: Arc::clone(&info.name),
                model_version: Arc::clone(&info.version),
                cache_status: cache.as_str(),
                input_hash: key.hash(),
                input,
                answer: computed.answer.body.clone(),
                confidence: computed.answer.confidence,
                latency: opts.received.elapsed(),
                client_addr: opts.client_addr.filter(|_| self.cfg.log_client_addr),
                api_key: opts.api_key,
                trace_id: Some(opts.trace.trace_id_hex()),
                shadow: None,
                model_load: computed.load.filter(|_| !cache.is_cached()),
            }
        });
        match shadow {
            Some((candidate, input)) => self.parts.shadow.mirror(ShadowJob {
                candidate,
                primary_version: Arc::clone(&model.info().version),
                primary_probs: Arc::clone(&computed.answer.probs),
                input,
                row,
            }),
            None => {
                if let (Some(log), Some(row)) = (&self.parts.log, row) {
                    log.submit(row);
                }
            }
        }
        // Decode and preprocess times belong to the request that did the work.
        let own = matches!(cache, CacheStatus::Miss | CacheStatus::Bypass);
        Ok(Prediction {
            prediction_id,
            model,
            answer: computed.answer,
            cache,
            queue_wait: computed.queue_wait,
            compute: computed.compute,
            batch_size: computed.batch_size,
            decode: if own { computed.decode } else { Duration::ZERO },
            preprocess: if own {
                computed.preprocess
            } else {
                Duration::ZERO
            },
            load: computed.load.filter(|_| !cache.is_cached()),
        })
    }

    async fn read_through(
        &self,
        model: &Arc<dyn Model>,
        key: &CacheKey,
        pending: Pending,
        bypass_cache: bool,
        deadline: &Deadline,
    ) -> Result<(Computed, CacheStatus), FlightError> {
        if bypass_cache {
            let tiers = [
                ("l1", self.parts.l1.is_some()),
                ("l2", self.parts.l2.is_some()),
            ];
            for (tier, _) in tiers.into_iter().filter(|(_, on)| *on) {
                metrics::counter!(CACHE_REQUESTS_TOTAL, "tier" => tier, "result" => "bypass")
                    .increment(1);
            }
            return Ok((
                self.compute(model, key, pending, deadline).await?,
                CacheStatus::Bypass,
            ));
        }
        if let Some(hit) = self.lookup(key) {
            return Ok((hit, CacheStatus::HitL1));
        }
        if !self.cfg.coalesce {
            let computed = self.miss(model, key, pending, deadline).await?;
            let status = computed.status;
            return Ok((computed, status));
        }
        let (outcome, role) = self
            .coalescer
            .run(key.hash(), || async {
                // Double-checked: the flight before ours may have filled the cache between
                // our lookup and our taking the lead.
                match self.parts.l1.as_ref().and_then(|l1| l1.get(key)) {
                    Some(answer) => Ok(cached(answer, CacheStatus::HitL1)),
                    None => self.miss(model, key, pending.clone(), deadline).await,
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
        pending: Pending,
        deadline: &Deadline,
    ) -> Result<Computed, FlightError> {
        if let Some(l2) = &self.parts.l2 {
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
                if let Some(l1) = &self.parts.l1 {
                    l1.insert(key, answer.clone());
                }
                return Ok(cached(answer, CacheStatus::HitL2));
            }
        }
        self.compute(model, key, pending, deadline).await
    }

    fn lookup(&self, key: &CacheKey) -> Option<Computed> {
        let l1 = self.parts.l1.as_ref()?;
        let hit = l1.get(key);
        self.l1_counts[usize::from(hit.is_none())].increment(1);
        hit.map(|answer| cached(answer, CacheStatus::HitL1))
    }

    /// Model work: admitted under the model's limit, then (images) decoded and
    /// preprocessed, batched and run, and its answer cached.
    async fn compute(
        &self,
        model: &Arc<dyn Model>,
        key: &CacheKey,
        pending: Pending,
        deadline: &Deadline,
    ) -> Result<Computed, FlightError> {
        // A version loaded on demand is loaded first (a cache hit never gets here, so it
        // never loads a model). The wait ends a little before the request's deadline so
        // that a load still waiting for room answers insufficient_memory, not a timeout.
        let until = deadline
            .at()
            .checked_sub(Duration::from_millis(2))
            .unwrap_or(deadline.at());
        let resident = self
            .parts
            .infer
            .resident(model, until)
            .await
            .map_err(|e| FlightError::Infer(Arc::new(e)))?;
        let model = &resident.model;
        let name = &model.info().name;
        let permit = self.parts.admission.admit(name, deadline).map_err(|shed| {
            match shed {
                Shed::Concurrency { .. } => count_shed(name, ShedReason::Concurrency),
                Shed::Deadline { .. } => {
                    count_shed(name, ShedReason::Deadline);
                    Stage::Admission.count();
                }
            }
            FlightError::Shed(shed)
        })?;
        let outcome = self
            .run_model(model, key, pending, deadline)
            .await
            .map(|computed| Computed {
                load: resident.load,
                ..computed
            });
        match &outcome {
            Err(e) if e.is_queue_full() => {
                count_shed(name, ShedReason::QueueFull);
                permit.expired();
            }
            Err(e) if e.is_deadline() => permit.expired(),
            // Answered or failed: either way, how long the model took.
            _ => permit.finished(),
        }
        outcome
    }

    async fn run_model(
        &self,
        model: &Arc<dyn Model>,
        key: &CacheKey,
        pending: Pending,
        deadline: &Deadline,
    ) -> Result<Computed, FlightError> {
        let (row, image_hash, decode, preprocess) = match pending {
            Pending::Features(features) => (features, None, Duration::ZERO, Duration::ZERO),
            Pending::Image {
                bytes,
                format,
                preprocess,
            } => {
                let imaging = self
                    .parts
                    .imaging
                    .as_ref()
                    .ok_or(FlightError::Image(ImageError::Stopped))?;
                let prepared = imaging
                    .prepare(bytes, format, preprocess)
                    .await
                    .map_err(FlightError::Image)?;
                (
                    prepared.tensor,
                    Some(prepared.md5),
                    prepared.decode,
                    prepared.preprocess,
                )
            }
        };
        let row = self
            .parts
            .batcher
            .predict(model, row, deadline.at())
            .await
            .map_err(FlightError::Infer)?;
        if !row.probs.iter().all(|p| p.is_finite()) {
            return Err(FlightError::NonFiniteOutput {
                model: model.info().name.to_string(),
            });
        }
        let info = model.info();
        let answer = match (image_hash, &info.input, info.task) {
            (Some(hash), _, _) => crate::encode::image(info, &hash, &row.probs),
            (None, InputSpec::Tensors(tensors), _) => {
                crate::encode::tensors(info, tensors, &row.probs)
            }
            (None, _, Task::Regression) => crate::encode::regression(info, &row.probs),
            (None, _, Task::Classification) => crate::encode::tabular(info, &row.probs),
        };
        if let Some(l1) = &self.parts.l1 {
            l1.insert(key, answer.clone());
        }
        if let Some(l2) = &self.parts.l2 {
            l2.set(key, &answer);
        }
        Ok(Computed {
            answer,
            status: CacheStatus::Miss,
            queue_wait: row.queue_wait,
            compute: row.compute,
            batch_size: row.batch_size,
            decode,
            preprocess,
            load: None,
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
        decode: Duration::ZERO,
        preprocess: Duration::ZERO,
        load: None,
    }
}

#[cfg(test)]
mod tests {
    //! The read-through against real compute threads, a real batcher and a real L1, with a
    //! model of known speed ([`Delayed`]) that counts its work. Redis is covered by the
    //! integration suite (`tests/it/redis_cache.rs`). The model runs on compute threads in
    //! real time: only the deadline test pauses tokio's clock, where the paused clock
    //! reaching the deadline while the model sleeps is the point.

    use super::*;
    use crate::admission::limit::LimitSettings;
    use crate::batch::BatchSettings;
    use crate::cache::l1::L1Settings;
    use crate::infer::delayed::Delayed;
    use crate::infer::model::testing::{Calls, fixed};
    use crate::infer::registry::{Catalog, Origin, Served};
    use crate::infer::worker::PoolSettings;
    use crate::shadow::ShadowSettings;

    /// A deadline no test here comes near.
    const AMPLE: Duration = Duration::from_secs(30);
    /// What each forward pass sleeps: long enough that concurrent requests overlap it.
    const FORWARD: Duration = Duration::from_millis(50);

    struct Rig {
        predictor: Predictor,
        stats: Arc<Stats>,
        calls: Arc<Calls>,
    }

    /// A predictor over one 4-feature model `m` answering `probs` after `delay`: its own
    /// compute thread, batcher, L1, shadow runner; no Redis, log nor imaging.
    fn rig(probs: &[f32], delay: Duration, admission: Option<LimitSettings>) -> Rig {
        let (model, calls) = fixed("m", 4, probs);
        let model: Arc<dyn Model> = Arc::new(Delayed::new(model, delay));
        let catalog = Catalog::new(vec![Served::new("m".into(), Origin::Config, vec![model])]);
        let infer = Arc::new(
            Infer::start(
                catalog,
                &PoolSettings {
                    threads: 1,
                    queue_capacity: 64,
                },
            )
            .unwrap(),
        );
        let stats = Arc::new(Stats::new());
        let batcher = Batcher::start(
            Arc::clone(&infer),
            Arc::clone(&stats),
            BatchSettings {
                max_size: 8,
                max_wait: Duration::from_millis(1),
                max_in_flight: 1,
                queue_capacity: 64,
            },
        )
        .unwrap();
        let shadow = Shadow::start(
            batcher.clone(),
            None,
            None,
            &ShadowSettings {
                queue_capacity: 16,
                max_in_flight: 1,
                timeout: AMPLE,
            },
        )
        .unwrap();
        let predictor = Predictor::new(
            PredictorParts {
                admission: Arc::new(Admission::new(admission, ["m"])),
                infer,
                batcher,
                l1: Some(L1::new(&L1Settings {
                    max_entries: 1024,
                    max_bytes: 1 << 20,
                    ttl: Duration::from_secs(600),
                    shards: 1,
                })),
                l2: None,
                stats: Arc::clone(&stats),
                log: None,
                imaging: None,
                shadow: Arc::new(shadow),
            },
            PredictSettings {
                coalesce: true,
                log_client_addr: false,
            },
        );
        Rig {
            predictor,
            stats,
            calls,
        }
    }

    /// Adaptive admission off: everything is admitted.
    fn no_shedding() -> Option<LimitSettings> {
        None
    }

    fn input(features: &[f32]) -> TabularInput {
        TabularInput {
            model: None,
            version: None,
            features: features.to_vec(),
            len: features.len(),
            missing: None,
        }
    }

    fn opts(budget: Duration, bypass_cache: bool) -> RequestOptions {
        let now = tokio::time::Instant::now();
        RequestOptions {
            bypass_cache,
            request_id: "test".into(),
            client_addr: None,
            received: now,
            api_key: None,
            deadline: Deadline::new(now, budget),
            trace: TraceContext {
                trace_id: [1; 16],
                parent_id: None,
                span_id: [2; 8],
                flags: 1,
            },
        }
    }

    /// Whether L1 holds an answer for `features` of the rig's model.
    fn in_l1(rig: &Rig, features: &[f32]) -> bool {
        let chosen = rig
            .predictor
            .parts
            .infer
            .choose(None, None, InputKind::Features)
            .unwrap();
        let key = CacheKey::for_model(chosen.model.info(), Input::Features(features));
        rig.predictor.parts.l1.as_ref().unwrap().get(&key).is_some()
    }

    const PROBS: [f32; 3] = [0.1, 0.7, 0.2];
    const ROW: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

    #[tokio::test]
    async fn a_miss_fills_l1_and_the_same_request_is_then_a_hit_with_the_same_answer() {
        let rig = rig(&PROBS, FORWARD, no_shedding());
        let miss = rig.predictor.tabular(input(&ROW), opts(AMPLE, false)).await;
        let miss = miss.unwrap();
        assert_eq!(miss.cache, CacheStatus::Miss);
        assert_eq!(miss.batch_size, 1);
        assert!(in_l1(&rig, &ROW));

        let hit = rig.predictor.tabular(input(&ROW), opts(AMPLE, false)).await;
        let hit = hit.unwrap();
        assert_eq!(hit.cache, CacheStatus::HitL1);
        assert!(hit.cache.is_cached());
        assert_eq!(hit.answer.body, miss.answer.body);
        assert_eq!(hit.answer.probs, miss.answer.probs);
        assert!((hit.answer.confidence.unwrap() - 0.7).abs() < 1e-6);
        // A hit did no model work and says so.
        assert_eq!((hit.batch_size, hit.compute), (0, Duration::ZERO));
        assert_ne!(hit.prediction_id, miss.prediction_id);
        assert_eq!(rig.calls.passes(), 1);

        let stats = rig.stats.snapshot();
        assert_eq!(stats.total_predictions, 2);
        assert_eq!(stats.from_source(Source::Computed), 1);
        assert_eq!(stats.from_source(Source::L1), 1);
        assert_eq!((stats.cache_hits(), stats.cache_misses()), (1, 1));
    }

    #[tokio::test]
    async fn bypass_computes_again_and_still_fills_the_cache() {
        let rig = rig(&PROBS, FORWARD, no_shedding());
        let first = rig.predictor.tabular(input(&ROW), opts(AMPLE, true)).await;
        assert_eq!(first.unwrap().cache, CacheStatus::Bypass);
        assert_eq!(rig.calls.passes(), 1);
        // The bypass filled the cache for the next request.
        assert!(in_l1(&rig, &ROW));
        let hit = rig.predictor.tabular(input(&ROW), opts(AMPLE, false)).await;
        assert_eq!(hit.unwrap().cache, CacheStatus::HitL1);
        assert_eq!(rig.calls.passes(), 1);
        // And a bypass with the answer cached computes anyway.
        let again = rig.predictor.tabular(input(&ROW), opts(AMPLE, true)).await;
        let again = again.unwrap();
        assert_eq!(again.cache, CacheStatus::Bypass);
        assert!(!again.cache.is_cached());
        assert_eq!(rig.calls.passes(), 2);

        let stats = rig.stats.snapshot();
        assert_eq!(stats.from_source(Source::Bypass), 2);
        assert_eq!(stats.from_source(Source::L1), 1);
        assert_eq!(stats.from_source(Source::Computed), 0);
    }

    #[tokio::test]
    async fn identical_concurrent_misses_cost_one_forward_pass() {
        const N: usize = 8;
        let rig = rig(&PROBS, FORWARD, no_shedding());
        // All N are polled once, in order, before any can finish: the first leads the
        // flight, the others join it whatever the machine's speed.
        let all = futures_util::future::join_all(
            (0..N).map(|_| rig.predictor.tabular(input(&ROW), opts(AMPLE, false))),
        )
        .await;
        let statuses: Vec<CacheStatus> = all.iter().map(|p| p.as_ref().unwrap().cache).collect();
        assert_eq!(statuses[0], CacheStatus::Miss, "{statuses:?}");
        assert!(
            statuses[1..].iter().all(|s| *s == CacheStatus::Coalesced),
            "{statuses:?}"
        );
        let body = all[0].as_ref().unwrap().answer.body.clone();
        assert!(all.iter().all(|p| p.as_ref().unwrap().answer.body == body));
        // One pass of one row: not N rows batched together either.
        assert_eq!((rig.calls.passes(), rig.calls.rows()), (1, 1));

        let stats = rig.stats.snapshot();
        assert_eq!(stats.from_source(Source::Computed), 1);
        assert_eq!(stats.from_source(Source::Coalesced), N as u64 - 1);
        assert_eq!(stats.batched_rows, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_that_passes_first_is_deadline_exceeded_and_fills_nothing() {
        // The model sleeps 500 ms of real time; the paused clock reaches the 50 ms
        // deadline as soon as the runtime has nothing else to do.
        let slow = Duration::from_millis(500);
        let rig = rig(&PROBS, slow, no_shedding());
        let late = rig
            .predictor
            .tabular(input(&ROW), opts(Duration::from_millis(50), false))
            .await;
        assert!(
            matches!(late, Err(PredictError::DeadlineExceeded { budget_ms: 50 })),
            "{:?}",
            late.err()
        );
        // Whatever the compute thread still does with the abandoned row ends within the
        // model's delay; nothing of it reaches the cache or the counters.
        std::thread::sleep(slow + Duration::from_millis(300));
        assert!(!in_l1(&rig, &ROW));
        assert_eq!(rig.stats.snapshot().total_predictions, 0);

        // In real time with time to spare, the same request is computed: a miss.
        tokio::time::resume();
        let next = rig.predictor.tabular(input(&ROW), opts(AMPLE, false)).await;
        assert_eq!(next.unwrap().cache, CacheStatus::Miss);
    }

    #[tokio::test]
    async fn a_wrong_feature_count_is_refused_before_any_model_work() {
        let rig = rig(&PROBS, FORWARD, no_shedding());
        let short = rig
            .predictor
            .tabular(input(&[1.0, 2.0, 3.0]), opts(AMPLE, false))
            .await;
        match short {
            Err(PredictError::FeatureCount {
                expected,
                got,
                names,
            }) => {
                assert_eq!((expected, got), (4, 3));
                assert_eq!(names, ["x0", "x1", "x2", "x3"]);
            }
            other => panic!("not a feature count error: {:?}", other.err()),
        }
        assert_eq!(rig.calls.passes(), 0);
        assert_eq!(rig.stats.snapshot().total_predictions, 0);
    }

    #[tokio::test]
    async fn a_non_finite_output_is_refused_and_never_cached() {
        let rig = rig(&[f32::NAN, 1.0], FORWARD, no_shedding());
        for pass in 1..=2 {
            let answer = rig.predictor.tabular(input(&ROW), opts(AMPLE, false)).await;
            assert!(
                matches!(
                    &answer,
                    Err(PredictError::Flight(FlightError::NonFiniteOutput { model })) if model == "m"
                ),
                "{:?}",
                answer.err()
            );
            // Not cached: the second request runs the model again.
            assert_eq!(rig.calls.passes(), pass);
            assert!(!in_l1(&rig, &ROW));
        }
        assert_eq!(rig.stats.snapshot().total_predictions, 0);
    }

    #[tokio::test]
    async fn work_beyond_the_admission_limit_is_shed_without_running_the_model() {
        let one_at_a_time = LimitSettings {
            initial: 1,
            min: 1,
            max: 1,
            tolerance: 2.0,
            slack: Duration::from_millis(50),
            backoff: 0.5,
        };
        let rig = rig(&PROBS, FORWARD, Some(one_at_a_time));
        // Two distinct misses (no coalescing): the first holds the model's one place
        // while the second asks for it.
        let (first, second) = tokio::join!(
            rig.predictor.tabular(input(&ROW), opts(AMPLE, false)),
            rig.predictor
                .tabular(input(&[4.0, 3.0, 2.0, 1.0]), opts(AMPLE, false)),
        );
        assert_eq!(first.unwrap().cache, CacheStatus::Miss);
        assert!(
            matches!(
                &second,
                Err(PredictError::Flight(FlightError::Shed(Shed::Concurrency {
                    model: "m",
                    limit: 1,
                    ..
                })))
            ),
            "{:?}",
            second.err()
        );
        assert_eq!((rig.calls.passes(), rig.calls.rows()), (1, 1));
        // The place is free again once the first is answered.
        let later = rig
            .predictor
            .tabular(input(&[4.0, 3.0, 2.0, 1.0]), opts(AMPLE, false))
            .await;
        assert_eq!(later.unwrap().cache, CacheStatus::Miss);
    }
}
