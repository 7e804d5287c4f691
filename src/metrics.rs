//! Prometheus metrics: every metric name, its help text and its buckets live here.
//!
//! The recorder is the `metrics` facade's global one, so any thread may record; `/metrics`
//! renders it through a [`PrometheusHandle`] without a listener of its own. (A test that
//! runs several gateways in one process gives each a recorder of its own instead:
//! [`with_local_recorder`].)

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{
    BuildError, Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Requests answered, by route and status code.
pub const REQUESTS_TOTAL: &str = "infergate_requests_total";
/// Time from request head to response head, by route.
pub const REQUEST_DURATION: &str = "infergate_request_duration_seconds";
/// Time one forward pass took on a compute thread, by model.
pub const INFERENCE_DURATION: &str = "infergate_inference_duration_seconds";
/// Time a job waited in the inference queue before a compute thread took it.
pub const INFERENCE_QUEUE_WAIT: &str = "infergate_inference_queue_wait_seconds";
/// Jobs waiting in the inference queue.
pub const INFERENCE_QUEUE_DEPTH: &str = "infergate_inference_queue_depth";
/// Forward passes run, by model (one per batch, whatever its size).
pub const MODEL_FORWARDS_TOTAL: &str = "infergate_model_forwards_total";
/// Open client connections.
pub const CONNECTIONS_ACTIVE: &str = "infergate_connections_active";
/// Connections refused at accept because `server.max_connections` were open.
pub const CONNECTIONS_REJECTED_TOTAL: &str = "infergate_connections_rejected_total";
/// Connections refused at accept because their address held `http.max_connections_per_ip`.
pub const CONNECTIONS_REJECTED_PER_IP_TOTAL: &str = "infergate_connections_rejected_per_ip_total";
/// Connections the kernel could not hand over at accept (usually the open-file limit).
pub const ACCEPT_ERRORS_TOTAL: &str = "infergate_accept_errors_total";
/// Bytes in live allocations (jemalloc's `stats.allocated`), read at each scrape.
pub const ALLOCATOR_ALLOCATED_BYTES: &str = "infergate_allocator_allocated_bytes";
/// Bytes of memory the allocator's pages hold resident (jemalloc's `stats.resident`), read
/// at each scrape.
pub const ALLOCATOR_RESIDENT_BYTES: &str = "infergate_allocator_resident_bytes";
/// Idle HTTP/1.1 keep-alive connections parked now: no HTTP state or read buffer held.
pub const CONNECTIONS_PARKED: &str = "infergate_connections_parked";
/// Idle keep-alive connections closed at the open-file limit to make room for a new one.
pub const CONNECTIONS_RECLAIMED_TOTAL: &str = "infergate_connections_reclaimed_total";
/// Connections closed by a timeout, by kind (`tls_handshake`, `protocol_sniff`, `header_read`,
/// `idle`).
pub const CONNECTION_TIMEOUTS_TOTAL: &str = "infergate_connection_timeouts_total";
/// Cache lookups, by tier (`l1`, `l2`) and result (`hit`, `miss`, `bypass`; for `l2` also
/// `error`, and `skipped` while its circuit is open).
pub const CACHE_REQUESTS_TOTAL: &str = "infergate_cache_requests_total";
/// Requests answered by another identical request's inference.
pub const COALESCED_TOTAL: &str = "infergate_coalesced_total";
/// Rows per forward pass, by model.
pub const BATCH_SIZE: &str = "infergate_batch_size";
/// L2 (Redis) failures, by kind (`connect`, `connect_timeout`, `timeout`, `command`, `garbage`).
pub const L2_ERRORS_TOTAL: &str = "infergate_l2_errors_total";
/// 1 while the L2 circuit breaker is open (Redis considered down), else 0.
pub const L2_CIRCUIT_OPEN: &str = "infergate_l2_circuit_open";
/// Prediction log rows, by outcome (`written`, `spooled`, `replayed`, `dropped`).
pub const LOG_ROWS_TOTAL: &str = "infergate_log_rows_total";
/// Rows waiting in the queue between the request path and the log writer.
pub const LOG_QUEUE_DEPTH: &str = "infergate_log_queue_depth";
/// Time one batch write to Postgres took (COPY and commit).
pub const LOG_FLUSH_DURATION: &str = "infergate_log_flush_duration_seconds";
/// Bytes in the spool (rows waiting on disk for Postgres).
pub const LOG_SPOOL_BYTES: &str = "infergate_log_spool_bytes";
/// Spool segments that ended in a torn or corrupt record.
pub const LOG_SPOOL_TORN_TOTAL: &str = "infergate_log_spool_torn_total";
/// Time an upload took to become a model input on a decode thread, by stage (`decode`,
/// `preprocess`).
pub const IMAGE_PREPARE_DURATION: &str = "infergate_image_prepare_duration_seconds";
/// Constant 1, labelled with the version and the I/O backend.
pub const BUILD_INFO: &str = "infergate_build_info";
/// 1 for the I/O backend serving connections (`backend` = `uring` or `epoll`), 0 for the
/// other: an `auto` that fell back to epoll shows here.
pub const IO_BACKEND: &str = "infergate_io_backend";
/// TLS warnings triggered by clients (an IP address as SNI, …): counted, not logged each.
pub const TLS_CLIENT_WARNINGS_TOTAL: &str = "infergate_tls_client_warnings_total";

/// Requests refused for their API key, by reason (`missing`, `invalid`, `forbidden`).
pub const AUTH_REFUSED_TOTAL: &str = "infergate_auth_refused_total";
/// API keys in force (0 while the gateway is open).
pub const API_KEYS: &str = "infergate_api_keys";
/// Looks at the API key file that changed the keys (`ok`) or found it unusable (`error`).
pub const API_KEY_RELOADS_TOTAL: &str = "infergate_api_key_reloads_total";

/// Requests whose deadline passed, by the stage that found it (`admission`, `waiting`,
/// `batch_queue`; `compute_queue` counts batches dropped before their forward pass).
pub const DEADLINE_EXCEEDED_TOTAL: &str = "infergate_deadline_exceeded_total";
/// Queued work dropped because nobody waited for it any more (the client went away), by
/// stage (`batch_queue`: rows; `compute_queue`: batches).
pub const WORK_CANCELLED_TOTAL: &str = "infergate_work_cancelled_total";
/// Requests shed before any model work, by model and reason (`concurrency`: the adaptive
/// limit; `deadline`: less time left than the model needs; `queue_full`: a fixed queue).
pub const SHED_TOTAL: &str = "infergate_shed_total";
/// The adaptive concurrency limit of each model.
pub const ADMISSION_LIMIT: &str = "infergate_admission_limit";
/// Model work admitted and not finished, by model.
pub const ADMISSION_IN_FLIGHT: &str = "infergate_admission_in_flight";

/// Requests refused 429 by a rate limit, by policy (`key`, `ip`).
pub const RATE_LIMITED_TOTAL: &str = "infergate_rate_limited_total";
/// Gauge: 1 for each model version that serves, by `model` and `version`.
pub const MODEL_READY: &str = "infergate_model_ready";
/// Counter: model versions that failed to load, by `model`.
pub const MODEL_LOAD_FAILURES_TOTAL: &str = "infergate_model_load_failures_total";
/// Counter: repository reloads that changed what is served, by `trigger`.
pub const REPOSITORY_RELOADS_TOTAL: &str = "infergate_repository_reloads_total";
/// Counter: loads of versions on demand, by `model` and `outcome` (`ok`, `error`).
pub const MODEL_LOADS_TOTAL: &str = "infergate_model_loads_total";
/// Histogram: time one load on demand took (files read, engine built), by `model`.
pub const MODEL_LOAD_DURATION: &str = "infergate_model_load_duration_seconds";
/// Counter: versions loaded on demand and unloaded, by `reason` (`memory`, `idle`,
/// `unload`).
pub const MODEL_EVICTIONS_TOTAL: &str = "infergate_model_evictions_total";
/// Gauge: versions loaded on demand in memory now.
pub const MODELS_LOADED: &str = "infergate_models_loaded";
/// Gauge: what a version loaded on demand took at its load, bytes, by `model` and
/// `version` (0 once unloaded).
pub const MODEL_MEMORY_BYTES: &str = "infergate_model_memory_bytes";
/// Gauge: `repository.memory_budget_bytes` (0: no budget).
pub const REPOSITORY_MEMORY_BUDGET_BYTES: &str = "infergate_repository_memory_budget_bytes";
/// Counter: requests mirrored to a shadow version, by `model`, `candidate` and `outcome`
/// (`compared`, `failed`, `timeout`, `busy`, `dropped`, `not_loaded`).
pub const SHADOW_REQUESTS_TOTAL: &str = "infergate_shadow_requests_total";
/// Counter: shadow comparisons by `model`, `primary`, `candidate` and `top1`
/// (`agree` / `disagree`; `none` for regressors).
pub const SHADOW_COMPARISONS_TOTAL: &str = "infergate_shadow_comparisons_total";
/// Histogram: the largest absolute difference between the answer's and the candidate's
/// class probabilities (a regressor's: between the two values), by `model`, `primary` and
/// `candidate`.
pub const SHADOW_MAX_PROB_DELTA: &str = "infergate_shadow_max_prob_delta";

/// Gauge: memory in use on the GPU the image models run on, bytes, by `device` (`cuda:0`),
/// as the driver reports it (every process's, not only this one's); cuda builds on a GPU.
pub const GPU_MEMORY_USED_BYTES: &str = "infergate_gpu_memory_used_bytes";
/// Gauge: that GPU's memory, bytes, by `device`.
pub const GPU_MEMORY_TOTAL_BYTES: &str = "infergate_gpu_memory_total_bytes";

/// Request latency buckets, seconds: from half a millisecond to a few seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Batch size buckets, rows.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
/// Log flush buckets, seconds: a COPY of a thousand rows takes milliseconds.
const FLUSH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Probability difference buckets (0 to 1).
const DELTA_BUCKETS: &[f64] = &[
    0.000001, 0.00001, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0,
];
/// Inference buckets, seconds: tabular models take microseconds, image models up to seconds.
const INFERENCE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the global recorder with real histogram buckets and describes every metric.
///
/// Call once per process; the caller must run [`PrometheusHandle::run_upkeep`] every few
/// seconds so histogram samples are drained between scrapes.
pub fn install(io_backend: &'static str) -> Result<PrometheusHandle, BuildError> {
    let recorder = recorder()?;
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    publish_constants(io_backend);
    Ok(handle)
}

/// Runs `f` with a recorder of its own, not the process-wide one, handed its handle: what
/// the calling thread records while `f` runs goes there (and what is resolved there, such
/// as a counter kept in a struct, keeps recording there from any thread). Several gateways
/// can so live in one process, each rendering its own `/metrics` (the in-process test
/// harness). What other threads record by name goes to the process-wide recorder, if any.
pub fn with_local_recorder<T>(
    io_backend: &'static str,
    f: impl FnOnce(PrometheusHandle) -> T,
) -> Result<T, BuildError> {
    let recorder = recorder()?;
    let handle = recorder.handle();
    Ok(metrics::with_local_recorder(&recorder, || {
        publish_constants(io_backend);
        f(handle)
    }))
}

/// The recorder with real histogram buckets, installed nowhere yet.
fn recorder() -> Result<PrometheusRecorder, BuildError> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), REQUEST_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(INFERENCE_DURATION.into()), INFERENCE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(MODEL_LOAD_DURATION.into()), INFERENCE_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(IMAGE_PREPARE_DURATION.into()),
            INFERENCE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(INFERENCE_QUEUE_WAIT.into()),
            INFERENCE_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(LOG_FLUSH_DURATION.into()), FLUSH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(SHADOW_MAX_PROB_DELTA.into()), DELTA_BUCKETS)?
        .build_recorder())
}

/// Describes every metric and sets the ones fixed at start, in the current recorder.
fn publish_constants(io_backend: &'static str) {
    describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "io_backend" => io_backend).set(1.0);
    for backend in ["uring", "epoll"] {
        gauge!(IO_BACKEND, "backend" => backend).set(if backend == io_backend { 1.0 } else { 0.0 });
    }
    gauge!(CONNECTIONS_ACTIVE).set(0.0);
    gauge!(CONNECTIONS_PARKED).set(0.0);
    gauge!(INFERENCE_QUEUE_DEPTH).set(0.0);
    export_rare_at_zero();
}

/// Exports at zero the counters of events a healthy gateway may never see, so that a query
/// over them (the dashboard's shed and timeout panels) reads 0 instead of nothing: the
/// exporter renders only metrics that were touched. Only series the code emits whatever the
/// configuration; those of the cache tiers, Redis and the prediction log appear once their
/// part starts.
fn export_rare_at_zero() {
    counter!(CONNECTIONS_REJECTED_TOTAL).absolute(0);
    counter!(CONNECTIONS_REJECTED_PER_IP_TOTAL).absolute(0);
    counter!(CONNECTIONS_RECLAIMED_TOTAL).absolute(0);
    counter!(ACCEPT_ERRORS_TOTAL).absolute(0);
    for kind in ["tls_handshake", "protocol_sniff", "header_read", "idle"] {
        counter!(CONNECTION_TIMEOUTS_TOTAL, "kind" => kind).absolute(0);
    }
    // What a shed /predict answers: 503 overloaded or shutting_down, 504 deadline_exceeded.
    counter!(REQUESTS_TOTAL, "route" => "/predict", "status" => "503").absolute(0);
    counter!(REQUESTS_TOTAL, "route" => "/predict", "status" => "504").absolute(0);
    for stage in ["admission", "waiting", "batch_queue", "compute_queue"] {
        counter!(DEADLINE_EXCEEDED_TOTAL, "stage" => stage).absolute(0);
    }
    for stage in ["batch_queue", "compute_queue"] {
        counter!(WORK_CANCELLED_TOTAL, "stage" => stage).absolute(0);
    }
    counter!(COALESCED_TOTAL).absolute(0);
    for reason in ["memory", "idle", "unload"] {
        counter!(MODEL_EVICTIONS_TOTAL, "reason" => reason).absolute(0);
    }
    gauge!(MODELS_LOADED).set(0.0);
    gauge!(REPOSITORY_MEMORY_BUDGET_BYTES).set(0.0);
    counter!(TLS_CLIENT_WARNINGS_TOTAL).absolute(0);
    for policy in ["key", "ip"] {
        counter!(RATE_LIMITED_TOTAL, "policy" => policy).absolute(0);
    }
    for reason in ["missing", "invalid", "forbidden", "protected"] {
        counter!(AUTH_REFUSED_TOTAL, "reason" => reason).absolute(0);
    }
}

fn describe() {
    describe_gauge!(
        MODEL_READY,
        "1 for each model version serving requests, by model and version (0 once it stops)."
    );
    describe_counter!(
        MODEL_LOAD_FAILURES_TOTAL,
        "Model versions that failed to load (start, repository reload or API), by model."
    );
    describe_counter!(
        REPOSITORY_RELOADS_TOTAL,
        "Repository looks that changed the served models, by trigger (poll, signal, api)."
    );
    describe_counter!(
        SHADOW_REQUESTS_TOTAL,
        "Requests mirrored to a shadow version, by model, candidate and outcome (compared, \
         failed, timeout, busy, dropped, not_loaded)."
    );
    describe_counter!(
        MODEL_LOADS_TOTAL,
        "Loads of model versions on demand, by model and outcome (ok, error)."
    );
    describe_histogram!(
        MODEL_LOAD_DURATION,
        metrics::Unit::Seconds,
        "Time one load on demand took (files read, engine built), by model."
    );
    describe_counter!(
        MODEL_EVICTIONS_TOTAL,
        "Versions loaded on demand that were unloaded, by reason (memory: to make room in the \
         budget; idle: idle_unload_s; unload: the repository API)."
    );
    describe_gauge!(MODELS_LOADED, "Versions loaded on demand in memory now.");
    describe_gauge!(
        MODEL_MEMORY_BYTES,
        metrics::Unit::Bytes,
        "What each version loaded on demand took at its load, by model and version (0 once \
         unloaded)."
    );
    describe_gauge!(
        GPU_MEMORY_USED_BYTES,
        metrics::Unit::Bytes,
        "Memory in use on the image models' GPU, by device, as its driver reports it (all \
         processes); read every few seconds."
    );
    describe_gauge!(
        GPU_MEMORY_TOTAL_BYTES,
        metrics::Unit::Bytes,
        "The image models' GPU's memory, by device."
    );
    describe_gauge!(
        REPOSITORY_MEMORY_BUDGET_BYTES,
        metrics::Unit::Bytes,
        "repository.memory_budget_bytes: memory for the versions loaded on demand (0: none)."
    );
    describe_counter!(
        SHADOW_COMPARISONS_TOTAL,
        "Shadow comparisons by model, primary and candidate version, and whether their top-1 \
         classes agree (top1=agree|disagree; none for regressors)."
    );
    describe_histogram!(
        SHADOW_MAX_PROB_DELTA,
        "Largest absolute difference between the answer's and the shadow candidate's class \
         probabilities (regressors: between the two values)."
    );
    describe_counter!(
        DEADLINE_EXCEEDED_TOTAL,
        "Requests whose deadline passed, by the stage that found it (admission, waiting, \
         batch_queue; compute_queue counts batches dropped before their forward pass)."
    );
    describe_counter!(
        WORK_CANCELLED_TOTAL,
        "Queued work dropped because its client went away, by stage (batch_queue: rows; \
         compute_queue: batches)."
    );
    describe_counter!(
        SHED_TOTAL,
        "Requests shed before any model work, by model and reason (concurrency: the adaptive \
         limit; deadline: less time left than the model needs; queue_full: a fixed queue)."
    );
    describe_gauge!(
        ADMISSION_LIMIT,
        "The adaptive concurrency limit of each model."
    );
    describe_gauge!(
        ADMISSION_IN_FLIGHT,
        "Model work admitted and not finished, by model."
    );
    describe_counter!(
        AUTH_REFUSED_TOTAL,
        "Requests refused for their API key, by reason (missing, invalid, forbidden), or by protected mode (protected: an admin route asked from off this machine while there are no keys)."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests refused 429 by a rate limit, by policy (key: per API key; ip: per client address)."
    );
    describe_gauge!(API_KEYS, "API keys in force; 0 while the gateway is open.");
    describe_counter!(
        API_KEY_RELOADS_TOTAL,
        "Looks at the API key file that changed the keys (ok) or found it unusable (error)."
    );
    describe_counter!(
        TLS_CLIENT_WARNINGS_TOTAL,
        "TLS warnings triggered by clients (such as an IP address sent as SNI); logged as one \
         summary line a minute at most."
    );
    describe_counter!(
        CACHE_REQUESTS_TOTAL,
        "Cache lookups, by tier (l1, l2) and result (hit, miss, bypass, error, skipped)."
    );
    describe_counter!(
        COALESCED_TOTAL,
        "Requests answered by an identical concurrent request's inference."
    );
    describe_histogram!(BATCH_SIZE, "Rows per forward pass, by model.");
    describe_histogram!(
        IMAGE_PREPARE_DURATION,
        metrics::Unit::Seconds,
        "Time an upload took to become a model input on a decode thread, by stage."
    );
    describe_counter!(
        L2_ERRORS_TOTAL,
        "L2 (Redis) failures, by kind; each one is a cache miss, never a client error."
    );
    describe_gauge!(
        L2_CIRCUIT_OPEN,
        "1 while the L2 circuit breaker is open (Redis considered down)."
    );
    describe_counter!(
        LOG_ROWS_TOTAL,
        "Prediction log rows, by outcome (written, spooled, replayed, dropped)."
    );
    describe_gauge!(
        LOG_QUEUE_DEPTH,
        "Rows waiting between the request path and the log writer."
    );
    describe_histogram!(
        LOG_FLUSH_DURATION,
        metrics::Unit::Seconds,
        "Time one batch write to Postgres took (COPY and commit)."
    );
    describe_gauge!(
        LOG_SPOOL_BYTES,
        "Bytes of rows spooled on disk, waiting for Postgres."
    );
    describe_counter!(
        LOG_SPOOL_TORN_TOTAL,
        "Spool segments that ended in a torn or corrupt record (its rows after it not replayed)."
    );
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests answered, by route and status code."
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from request head to response, by route."
    );
    describe_histogram!(
        INFERENCE_DURATION,
        metrics::Unit::Seconds,
        "Time one forward pass took on a compute thread, by model."
    );
    describe_histogram!(
        INFERENCE_QUEUE_WAIT,
        metrics::Unit::Seconds,
        "Time a job waited in the inference queue."
    );
    describe_gauge!(
        INFERENCE_QUEUE_DEPTH,
        "Jobs waiting in the inference queue."
    );
    describe_counter!(MODEL_FORWARDS_TOTAL, "Forward passes run, by model.");
    describe_gauge!(CONNECTIONS_ACTIVE, "Open client connections.");
    describe_gauge!(
        ALLOCATOR_ALLOCATED_BYTES,
        metrics::Unit::Bytes,
        "Bytes in live allocations (jemalloc stats.allocated), read at each scrape."
    );
    describe_gauge!(
        ALLOCATOR_RESIDENT_BYTES,
        metrics::Unit::Bytes,
        "Bytes the allocator's pages hold resident (jemalloc stats.resident), read at each scrape."
    );
    describe_counter!(
        CONNECTIONS_REJECTED_TOTAL,
        "Connections closed at accept because server.max_connections were open."
    );
    describe_counter!(
        CONNECTIONS_REJECTED_PER_IP_TOTAL,
        "Connections closed at accept because their address held http.max_connections_per_ip."
    );
    describe_counter!(
        ACCEPT_ERRORS_TOTAL,
        "Accepts that failed, usually at the open-file limit (EMFILE)."
    );
    describe_gauge!(
        CONNECTIONS_PARKED,
        "Idle HTTP/1.1 keep-alive connections parked: hyper and its buffers freed until the client's next bytes."
    );
    describe_counter!(
        CONNECTIONS_RECLAIMED_TOTAL,
        "Idle keep-alive connections closed at the open-file limit to make room for a new one."
    );
    describe_counter!(
        CONNECTION_TIMEOUTS_TOTAL,
        "Connections closed by a timeout, by kind (tls_handshake, protocol_sniff, header_read, idle)."
    );
    describe_gauge!(
        BUILD_INFO,
        "Constant 1, labelled with version and I/O backend."
    );
    describe_gauge!(
        IO_BACKEND,
        "1 for the I/O backend serving connections (uring or epoll), 0 for the other."
    );
}

/// Reads the allocator's totals into [`ALLOCATOR_ALLOCATED_BYTES`] and
/// [`ALLOCATOR_RESIDENT_BYTES`]: called at each scrape, so the gauges are as fresh as it.
pub fn record_allocator() {
    // jemalloc's totals are a snapshot refreshed by advancing its epoch.
    if tikv_jemalloc_ctl::epoch::advance().is_err() {
        return;
    }
    if let Ok(bytes) = tikv_jemalloc_ctl::stats::allocated::read() {
        gauge!(ALLOCATOR_ALLOCATED_BYTES).set(bytes as f64);
    }
    if let Ok(bytes) = tikv_jemalloc_ctl::stats::resident::read() {
        gauge!(ALLOCATOR_RESIDENT_BYTES).set(bytes as f64);
    }
}
