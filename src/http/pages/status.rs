//! `GET /console/status`: what the console polls, in one small answer — the gateway
//! (version, uptime, readiness as `/ready` has it), the last half minute's predictions
//! (rate, cache hit rate, latency percentiles), and each model as a form to try it needs
//! it (its input, feature names, versions and how traffic is split over them).

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::answers::Ready;
use crate::infer::manifest::{InputSpec, Task};
use crate::infer::registry::Served;
use crate::readiness::Readiness;
use crate::state::Gateway;
use crate::stats::recent::RecentReading;

/// `GET /console/status`.
#[derive(Serialize, ToSchema)]
pub struct ConsoleStatus {
    /// The gateway's version.
    pub version: &'static str,
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Readiness, as `GET /ready` answers it.
    pub ready: Ready,
    /// Predictions over the last half minute.
    pub traffic: Traffic,
    /// Every model, serving or not.
    pub models: Vec<ConsoleModel>,
}

/// `traffic` of `GET /console/status`: the predictions answered over the last
/// `window_s` seconds, whatever the protocol.
#[derive(Serialize, ToSchema)]
pub struct Traffic {
    /// The window, seconds: 30, less while the process is younger.
    pub window_s: f64,
    /// Predictions answered in it.
    pub predictions: u64,
    /// Predictions per second over it.
    pub per_s: f64,
    /// Answers from a cache tier over answers; `null` without a prediction.
    pub cache_hit_rate: Option<f64>,
    /// Latency percentiles, ms, from the request's arrival to its answer (to within 5 %);
    /// `null` without a prediction.
    pub latency_ms: Option<Percentiles>,
    /// Predictions this process answered since it started.
    pub served_total: u64,
}

/// Latency percentiles, ms.
#[derive(Serialize, ToSchema)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// One model in `models` of `GET /console/status`.
#[derive(Serialize, ToSchema)]
pub struct ConsoleModel {
    /// Its name.
    pub name: String,
    /// As the repository index says.
    #[schema(value_type = crate::http::answers::ModelState)]
    pub state: &'static str,
    /// Why it does not serve; `null` when it does.
    pub reason: Option<String>,
    /// What `POST /predict` takes for it: `features` (JSON), `image` (an upload), or
    /// `tensors` (named tensors: the Open Inference Protocol only); `null` while no
    /// version is loaded.
    pub input: Option<&'static str>,
    /// A tabular model's feature names, in order; empty for the others.
    pub features: Vec<String>,
    /// `classification` or `regression`.
    pub task: &'static str,
    /// Its classes (a regressor: 1, its target).
    pub classes: u64,
    /// Every version loaded, the default first.
    pub versions: Vec<ConsoleVersion>,
}

/// One version in `versions` of a console model.
#[derive(Serialize, ToSchema)]
pub struct ConsoleVersion {
    /// The version.
    pub version: String,
    /// Share of the requests that name no version it answers, percent (its traffic
    /// split's weight, or 100 for the default when there is no split).
    pub traffic_percent: f64,
    /// Share of the model's requests mirrored to it as a shadow, percent; `null` when it
    /// is no shadow.
    pub shadow_percent: Option<f64>,
    /// Where its forward passes run: `cpu`, or a GPU (`cuda:0`).
    pub device: String,
    /// The number format it computes in: `f32`, `f16` or `bf16`.
    pub precision: &'static str,
}

impl ConsoleStatus {
    /// The gateway now.
    pub fn of(gw: &Gateway) -> Self {
        let snapshot = gw.lifecycle.stats.snapshot();
        let catalog = gw.serving.infer.catalog();
        Self {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: snapshot.uptime_s,
            ready: Ready::new(&Readiness::of(gw), gw),
            traffic: Traffic::of(&gw.lifecycle.stats.recent(), snapshot.total_predictions),
            models: catalog.models().iter().map(ConsoleModel::of).collect(),
        }
    }
}

impl Traffic {
    fn of(recent: &RecentReading, served_total: u64) -> Self {
        let window_s = recent.span.as_secs_f64();
        let predictions = recent.predictions;
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        Self {
            window_s,
            predictions,
            per_s: if window_s > 0.0 {
                predictions as f64 / window_s
            } else {
                0.0
            },
            cache_hit_rate: (predictions > 0).then(|| recent.cached as f64 / predictions as f64),
            latency_ms: recent.latency.map(|[p50, p90, p99]| Percentiles {
                p50: ms(p50),
                p90: ms(p90),
                p99: ms(p99),
            }),
            served_total,
        }
    }
}

impl ConsoleModel {
    fn of(m: &Served) -> Self {
        let first = m.versions.first().map(|v| v.info());
        let features = match first.map(|info| &info.input) {
            Some(InputSpec::Features { names }) => names.clone(),
            _ => Vec::new(),
        };
        let split: Vec<(usize, u32)> = m.split.iter().flat_map(|s| s.weights()).collect();
        let total: u32 = split.iter().map(|&(_, w)| w).sum();
        let versions = m
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let info = v.info();
                let traffic_percent = if total > 0 {
                    let weight: u32 = split
                        .iter()
                        .filter(|&&(j, _)| j == i)
                        .map(|&(_, w)| w)
                        .sum();
                    100.0 * f64::from(weight) / f64::from(total)
                } else if i == 0 {
                    100.0
                } else {
                    0.0
                };
                ConsoleVersion {
                    version: info.version.to_string(),
                    traffic_percent,
                    shadow_percent: m
                        .shadow
                        .as_ref()
                        .filter(|s| s.version == i)
                        .map(|s| 100.0 * s.share),
                    device: info.compute.device_name(),
                    precision: info.compute.precision.name(),
                }
            })
            .collect();
        Self {
            name: m.name.clone(),
            state: m.state(),
            reason: m.unserved_reason().map(str::to_owned),
            input: first.map(|info| match info.input {
                InputSpec::Features { .. } => "features",
                InputSpec::Image(_) => "image",
                InputSpec::Tensors(_) => "tensors",
            }),
            features,
            task: match first.map(|info| info.task) {
                Some(Task::Regression) => "regression",
                _ => "classification",
            },
            classes: first.map_or(0, |info| info.labels.len() as u64),
            versions,
        }
    }
}
