//! What the gateway says about itself: liveness ([`Health`]) and readiness
//! ([`Readiness`]), each computed once per question from the gateway's state and rendered
//! by every protocol that asks (REST `/health` and `/ready`, the Open Inference Protocol's
//! health and model readiness over REST and gRPC, the redirect listener's `/health`).

use serde::Serialize;
use utoipa::ToSchema;

use crate::cache::l2::L2Health;
use crate::prediction_log::DbStatus;
use crate::state::Dependency;
use crate::state::Gateway;

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

impl Health {
    /// The process serves: which default model, for how long.
    pub fn of(gw: &Gateway) -> Self {
        let catalog = gw.serving.infer.catalog();
        let default = catalog.defaults().next().map(|m| m.info());
        Self {
            status: HealthStatus::Healthy,
            model: default.map(|info| info.name.to_string()),
            version: default.map(|info| info.version.to_string()),
            uptime_s: gw.lifecycle.stats.snapshot().uptime_s,
        }
    }
}

/// A dependency's state (`checks.redis`, `checks.database`, `/stats`' prediction log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Dependency)]
pub enum DependencyState {
    /// Configured and answering.
    Ok,
    /// Configured and not answering (or still connecting).
    Down,
    /// Not configured.
    Disabled,
}

impl DependencyState {
    /// The prediction log's database, as its writer last found it.
    pub fn database(gw: &Gateway) -> Self {
        match gw.lifecycle.log.as_ref().map(|log| log.status()) {
            None => Self::Disabled,
            Some(DbStatus::Ok) => Self::Ok,
            Some(DbStatus::Down) => Self::Down,
        }
    }

    /// Redis (the L2 cache): one that never answered is not one a replica can count on.
    pub fn redis(gw: &Gateway) -> Self {
        match gw.lifecycle.redis.as_ref().map(|l2| l2.health()) {
            None => Self::Disabled,
            Some(L2Health::Ok) => Self::Ok,
            Some(L2Health::Connecting | L2Health::Down) => Self::Down,
        }
    }
}

/// Whether the gateway should be sent traffic, and what that was decided from.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// Every model answered its warm-up inference.
    pub warm: bool,
    /// A drain has begun.
    pub draining: bool,
    /// The public listener is open. It does not decide readiness: a standby instance is
    /// ready to be activated.
    pub listening: bool,
    /// Redis. Down alone degrades (L1 only): every replica shares it.
    pub redis: DependencyState,
    /// The prediction log's database; as `redis`.
    pub database: DependencyState,
    /// The dependencies in `ready.require` that are down: `redis`, `database`.
    pub required_down: Vec<&'static str>,
}

impl Readiness {
    /// The gateway's readiness now.
    pub fn of(gw: &Gateway) -> Self {
        let redis = DependencyState::redis(gw);
        let database = DependencyState::database(gw);
        let required_down = gw
            .lifecycle
            .ready_require
            .iter()
            .filter_map(|d| match d {
                Dependency::Redis => (redis != DependencyState::Ok).then_some("redis"),
                Dependency::Database => (database != DependencyState::Ok).then_some("database"),
            })
            .collect();
        Self {
            warm: gw.lifecycle.flags.models_warm(),
            draining: gw.lifecycle.shutdown.is_draining(),
            listening: gw.lifecycle.flags.is_listening(),
            redis,
            database,
            required_down,
        }
    }

    /// Ready: every model warm, no drain begun, no required dependency down.
    pub fn is_ready(&self) -> bool {
        self.warm && !self.draining && self.required_down.is_empty()
    }
}
