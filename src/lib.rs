//! infergate: an edge inference gateway in one process.
//!
//! Modules are declared in the order one request meets them: the listener and TLS
//! (`server`), hyper and the routes (`http`), the API keys and rate limits (`auth`,
//! `rate_limit`), the request's trace and deadline (`trace_context`, `deadline`), the
//! adaptive limit in front of each model (`admission`), the read-through (`predict`), image decoding
//! and preprocessing (`imaging`), the cache,
//! coalescer and batcher (`cache`, `coalesce`, `batch`), the models (`infer`), the answer
//! encoding (`encode`), where models come from (`repository`), what the gateway says of itself
//! (`readiness`); then the side paths
//! (`shadow`, `prediction_log`, `metrics`, `stats`) and the wiring (`config`, `cli`,
//! `app`, `shutdown`, `file_watch`, `idle_exit`, `telemetry`, `hex`, the one lowercase hex
//! encoder, and `background`, the one way to start a thread with its own runtime).
#![forbid(unsafe_code)]

/// The binary's allocator in the library's tests too, so they measure loads as it does.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod server;
pub mod http;
pub mod auth;
pub mod rate_limit;
pub mod trace_context;
pub mod deadline;
pub mod admission;
pub mod predict;
pub mod imaging;
pub mod cache;
pub mod coalesce;
pub mod batch;
pub mod infer;
pub mod encode;
pub mod repository;
pub mod state;
pub mod readiness;
pub mod shadow;
pub mod prediction_log;
pub mod metrics;
pub mod stats;
pub mod shutdown;
pub mod file_watch;
pub mod hex;
pub mod ids;
pub mod panic_message;
pub mod background;
pub mod idle_exit;
pub mod telemetry;
pub mod config;
pub mod cli;
pub mod healthcheck;
pub mod app;
