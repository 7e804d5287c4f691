//! Everything below the listener, built from a validated `Config`: the models, compute
//! threads, batcher, caches and prediction log, wired into one [`Gateway`].

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use super::AppError;
use crate::admission::Admission;
use crate::auth::{Auth, ProtectedMode};
use crate::batch::Batcher;
use crate::cache::CacheMode;
use crate::cache::l1::L1;
use crate::cache::l2::L2;
use crate::config::Config;
use crate::idle_exit::LastRequest;
use crate::imaging::Imaging;
use crate::infer::cnn::Precision;
use crate::infer::delayed::Delayed;
use crate::infer::image::{ImageModel, ImageModelOptions};
use crate::infer::manifest::InputKind;
use crate::infer::model::{Model, ModelError};
use crate::infer::tabular::TabularModel;
use crate::infer::{Infer, InferError, demo};
use crate::predict::{PredictSettings, Predictor, PredictorParts};
use crate::prediction_log::PredictionLog;
use crate::rate_limit::RateLimits;
use crate::repository::load::LoadOptions;
use crate::repository::{RepoState, Repository, RepositoryParts};
use crate::server::backend::Backend;
use crate::shadow::Shadow;
use crate::shutdown::Shutdown;
use crate::state::{BodyLimits, Flags, Gateway, Lifecycle, Limits, Serving};
use crate::stats::Stats;
use crate::telemetry::traces::Traces;

/// The gateway state and the metrics handle, built from a validated `Config`: models
/// loaded, compute threads, batcher, caches and the prediction log started; nothing
/// listening yet and not warm (see [`warm_up`]).
pub struct Assembled {
    /// The state every request sees.
    pub gateway: Arc<Gateway>,
    /// Renders `/metrics`; the control loop runs its upkeep.
    pub metrics: PrometheusHandle,
}

/// Builds everything below the listener (see [`Assembled`]); `backend` is what
/// `/stats`, `/ready` and the metrics will say serves connections. Installs the
/// process-wide metrics recorder, so it runs once per process.
pub fn assemble(config: &Config, backend: Backend) -> Result<Assembled, AppError> {
    let metrics = crate::metrics::install(backend.name())?;
    assemble_with_metrics(config, backend, metrics)
}

/// As [`assemble`], with `/metrics` rendered from `metrics`, a recorder the caller has set
/// up and made current (`crate::metrics::with_local_recorder`): several gateways in one
/// process, as the in-process test harness runs them.
pub fn assemble_with_metrics(
    config: &Config,
    backend: Backend,
    metrics: PrometheusHandle,
) -> Result<Assembled, AppError> {
    let device = image_device();
    let image_options = ImageModelOptions {
        max_batch: config.image.max_batch(device.is_cuda()),
        precision: config.image.precision,
        device,
    };
    if image_options.precision != Precision::F32 && image_options.device.is_cpu() {
        tracing::warn!(
            precision = image_options.precision.name(),
            "image.precision: on the CPU a 16-bit network runs candle's generic kernels, \
             slower than the gateway's f32 ones; it pays on a GPU"
        );
    }
    let image_device = image_options.device.location();
    let models = load_models(config, &image_options)?;
    let compute_threads = config.compute.resolved_threads();
    let imaging = start_imaging(config, &models, compute_threads)?.map(Arc::new);
    let infer = Arc::new(Infer::start(
        RepoState::new(models.clone()).catalog(),
        &config.compute.pool_settings(),
    )?);
    // The repository's models join the configured ones before anything listens; one that
    // fails to load is reported and the rest serve.
    let repository = match &config.repository.path {
        Some(root) => {
            let repository = Repository::start(
                RepositoryParts {
                    root: root.clone(),
                    poll_interval: config.repository.poll_interval(),
                    load: LoadOptions {
                        image: image_options,
                        forward_delay: config.model.forward_delay().unwrap_or_default(),
                    },
                    configured: models,
                    default_load: config.repository.load,
                    demand: config.repository.demand(),
                },
                Arc::clone(&infer),
            )?;
            tracing::info!(
                path = %root.display(),
                poll_interval_ms = config.repository.poll_interval_ms,
                "model repository on: models reload on change, on SIGHUP and through /v2/repository"
            );
            Some(Arc::new(repository))
        }
        None => None,
    };
    let stats = Arc::new(Stats::new());
    let shutdown = Shutdown::new();
    let batcher = Batcher::start(
        Arc::clone(&infer),
        Arc::clone(&stats),
        config.batch.settings(compute_threads),
    )?;
    let l1 = config.cache.l1_settings().map(|s| L1::new(&s));
    let l2 = match config.redis.l2_settings(&config.cache) {
        Some(settings) => Some(L2::start(settings)?),
        None => None,
    };
    let log = match config.prediction_log.settings(&config.database) {
        Some(cfg) => {
            let log = PredictionLog::start(cfg)?;
            tracing::info!(
                spool_dir = %config.prediction_log.spool_dir.display(),
                "prediction log on: rows go to PostgreSQL (spooled to disk while it is away)"
            );
            Some(log)
        }
        None => {
            tracing::info!("prediction log off: no database.url configured");
            None
        }
    };
    let cache_mode = CacheMode::of(l1.is_some(), l2.is_some());
    let shadow = Arc::new(Shadow::start(
        batcher.clone(),
        imaging.clone(),
        log.clone(),
        &config.shadow.settings(),
    )?);
    let admission = Arc::new(Admission::new(
        config.admission.limit_settings(compute_threads),
        infer.catalog().defaults().map(|m| &*m.info().name),
    ));
    let predictor = Predictor::new(
        PredictorParts {
            infer: Arc::clone(&infer),
            shadow: Arc::clone(&shadow),
            batcher,
            l1,
            l2: l2.clone(),
            stats: Arc::clone(&stats),
            log: log.clone(),
            imaging,
            admission: Arc::clone(&admission),
        },
        PredictSettings {
            coalesce: config.coalesce.enabled,
            log_client_addr: config.prediction_log.log_client_addr,
        },
    );
    let gateway = Arc::new(Gateway {
        serving: Serving {
            predictor,
            infer,
            limits: Limits {
                body: BodyLimits {
                    max_bytes: config.server.max_body_bytes,
                    timeout: config.server.request_timeout(),
                    min_bytes_per_s: config.http.min_body_bytes_per_s,
                    grace: config.http.body_pace_grace(),
                },
                max_headers: config.http.max_headers,
                deadline: config.admission.deadline_policy(&config.server),
            },
            auth: Arc::new(load_auth(config)?),
            rate_limits: RateLimits::new(&config.rate_limit.settings()),
            traces: Arc::new(Traces::start(config.otlp.settings().as_ref())?),
            last_request: LastRequest::new(),
            pages: config.ui.settings(),
        },
        lifecycle: Lifecycle {
            shutdown,
            flags: Flags::default(),
            ready_require: config.ready.require.clone(),
            io_backend: backend.kind(),
            image_device,
            cache_mode,
            metrics: metrics.clone(),
            stats,
            repository,
            log,
            shadow,
            admission,
            redis: l2,
        },
    });
    Ok(Assembled { gateway, metrics })
}

/// The API keys, from `auth.keys_path` (or the `api_keys` secret), protected mode
/// deciding who reaches the admin routes where there is no such file; said at start.
fn load_auth(config: &Config) -> Result<Auth, AppError> {
    let path = config.auth.keys_path(&config.secrets.dir);
    let auth = Auth::from_file(&path, ProtectedMode::new(&config.auth.protected()))?;
    super::access::announce(config, &auth, &path);
    Ok(auth)
}

/// The tabular model first (the `/health` default), then the image models: the configured
/// ones, then the bundled one; `image.default_model` goes first among them.
fn load_models(
    config: &Config,
    opts: &ImageModelOptions,
) -> Result<Vec<Arc<dyn Model>>, ModelError> {
    let tabular = load_tabular(config)?;
    let mut models: Vec<Arc<dyn Model>> = vec![match config.model.forward_delay() {
        None => Arc::new(tabular),
        Some(delay) => {
            tracing::warn!(
                delay_ms = config.model.forward_delay_ms,
                "model.forward_delay_ms: the tabular model sleeps before every forward pass (a test aid)"
            );
            Arc::new(Delayed::new(tabular, delay))
        }
    }];
    let mut images: Vec<Arc<dyn Model>> = Vec::new();
    for m in &config.image.models {
        let opts = ImageModelOptions {
            precision: m.precision.unwrap_or(opts.precision),
            ..opts.clone()
        };
        images.push(Arc::new(ImageModel::from_files(
            &m.path,
            &m.manifest(),
            &opts,
        )?));
    }
    if config.image.bundled {
        images.push(Arc::new(demo::efficientnet_lite0::load(opts)?));
    }
    if let Some(name) = &config.image.default_model {
        let at = images
            .iter()
            .position(|m| *m.info().name == **name)
            .ok_or_else(|| {
                ModelError::Load(format!(
                    "image.default_model {name:?} is not a loaded model"
                ))
            })?;
        let default = images.remove(at);
        images.insert(0, default);
    }
    for model in images {
        let info = model.info();
        if models.iter().any(|m| m.info().name == info.name) {
            return Err(ModelError::Load(format!(
                "two models are called {:?}; model names must be unique",
                info.name
            )));
        }
        tracing::info!(
            model = %info.name,
            version = %info.version,
            classes = info.labels.len(),
            device = ?opts.device,
            max_batch = info.max_batch,
            "image model loaded"
        );
        models.push(model);
    }
    Ok(models)
}

fn load_tabular(config: &Config) -> Result<TabularModel, ModelError> {
    let model = match (&config.model.path, config.model.manifest()) {
        (Some(weights), Some(manifest)) => TabularModel::from_files(weights, &manifest)?,
        _ => demo::load()?,
    };
    let m = model.manifest();
    tracing::info!(
        model = %m.name,
        version = %m.version,
        features = m.n_features(),
        classes = m.labels.len(),
        bundled = config.model.path.is_none(),
        "model loaded"
    );
    Ok(model)
}

/// Where image models run: the first GPU with the `cuda` feature (the CPU, with one
/// warning saying why, when there is no driver or no device), else the CPU.
fn image_device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    match crate::infer::cuda::first_gpu() {
        Ok(device) => return device,
        Err(e) => tracing::warn!(reason = %e, "no GPU: image models run on the CPU"),
    }
    candle_core::Device::Cpu
}

/// The decode threads, when an image model is loaded.
fn start_imaging(
    config: &Config,
    models: &[Arc<dyn Model>],
    compute_threads: usize,
) -> Result<Option<Imaging>, InferError> {
    // The repository may bring image models at any time.
    if config.repository.path.is_none()
        && !models.iter().any(|m| m.info().kind() == InputKind::Image)
    {
        return Ok(None);
    }
    let imaging = Imaging::start(&config.image.imaging_settings(compute_threads))
        .map_err(InferError::Spawn)?;
    Ok(Some(imaging))
}
