//! The one `Config` tree, composed of its sections, and how it is loaded and layered.
//!
//! Each section lives in `config/<section>.rs`: its keys (with the doc comments that
//! `config/default.toml` and the reference in docs/configuration.md are generated from,
//! see [`reference`]), their defaults, its checks, and the settings it gives the module
//! that uses it (`Duration`s, not `_ms` integers). Runtime modules never import `config`.
//!
//! Later layers win: built-in defaults < `<config-dir>/default.toml` <
//! `<config-dir>/<profile>.toml` < `--config FILE` < `INFERGATE_*` environment variables
//! (`__` nests) < Docker secret files < command-line flags. Every error names its source
//! (file and key, the literal environment variable, the secret file, or the flag), and all
//! of them are reported at once.

pub mod admission;
pub mod auth;
pub mod batch;
pub mod cache;
pub mod check;
pub mod coalesce;
pub mod compute;
pub mod database;
pub mod http;
pub mod image;
mod layers;
pub mod log;
pub mod model;
pub mod otlp;
pub mod prediction_log;
pub mod rate_limit;
pub mod ready;
pub mod redirect;
pub mod redis;
pub mod reference;
mod render;
pub mod repository;
pub mod secrets;
pub mod server;
pub mod shadow;
pub mod shutdown;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod ui;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::config::admission::AdmissionSection;
pub use crate::config::auth::AuthSection;
pub use crate::config::batch::BatchSection;
pub use crate::config::cache::{CacheSection, L1Section};
pub use crate::config::check::{Checks, ConfigError, ConfigErrors, Invalid};
pub use crate::config::coalesce::CoalesceSection;
pub use crate::config::compute::ComputeSection;
pub use crate::config::database::DatabaseSection;
pub use crate::config::http::HttpSection;
pub use crate::config::image::{ImageModelSection, ImageSection};
pub use crate::config::layers::FlagOverrides;
pub use crate::config::log::LogSection;
pub use crate::config::model::ModelSection;
pub use crate::config::otlp::OtlpSection;
pub use crate::config::prediction_log::PredictionLogSection;
pub use crate::config::rate_limit::RateLimitSection;
pub use crate::config::ready::ReadySection;
pub use crate::config::redirect::RedirectSection;
pub use crate::config::redis::RedisSection;
pub use crate::config::render::render_toml;
pub use crate::config::repository::RepositorySection;
pub use crate::config::secrets::{Secret, SecretsSection};
pub use crate::config::server::ServerSection;
pub use crate::config::shadow::ShadowSection;
pub use crate::config::shutdown::ShutdownSection;
pub use crate::config::tls::TlsSection;
pub use crate::config::ui::{UiScope, UiSection};

/// The whole configuration: one field per `[section]`, each documented on its type, in the
/// order `config/default.toml` lists them. Every section has defaults; an empty file is
/// valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub redirect: RedirectSection,
    pub http: HttpSection,
    pub auth: AuthSection,
    pub ui: UiSection,
    pub rate_limit: RateLimitSection,
    pub admission: AdmissionSection,
    pub compute: ComputeSection,
    pub model: ModelSection,
    pub image: ImageSection,
    pub repository: RepositorySection,
    pub shadow: ShadowSection,
    pub cache: CacheSection,
    pub redis: RedisSection,
    pub batch: BatchSection,
    pub coalesce: CoalesceSection,
    pub database: DatabaseSection,
    pub prediction_log: PredictionLogSection,
    pub ready: ReadySection,
    pub log: LogSection,
    pub otlp: OtlpSection,
    pub shutdown: ShutdownSection,
    pub secrets: SecretsSection,
}

impl Config {
    /// Every section's checks, those that look at two sections included; empty when valid.
    pub fn validate(&self) -> Vec<Invalid> {
        let mut checks = Checks::default();
        self.server.validate(&mut checks);
        self.tls.validate(&mut checks);
        self.redirect.validate(self.server.listen, &mut checks);
        self.http.validate(&mut checks);
        self.auth.validate(&mut checks);
        self.rate_limit.validate(&mut checks);
        self.admission.validate(&mut checks);
        self.compute.validate(&mut checks);
        self.model.validate(&mut checks);
        self.image.validate(&mut checks);
        self.repository.validate(&mut checks);
        self.shadow.validate(&mut checks);
        self.cache.validate(&mut checks);
        self.redis.validate(&mut checks);
        self.batch.validate(&mut checks);
        self.database.validate(&mut checks);
        self.prediction_log.validate(&mut checks);
        let redis_on = self.redis.url.is_some() && self.cache.enabled;
        let database_on = self.database.url.is_some();
        self.ready.validate(redis_on, database_on, &mut checks);
        self.log.validate(&mut checks);
        self.otlp.validate(&mut checks);
        self.shutdown.validate(&mut checks);
        checks.into_failures()
    }
}

/// Where to look for configuration, from the command line.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Directory holding `default.toml` and `<profile>.toml`.
    pub config_dir: PathBuf,
    /// Profile whose `<profile>.toml` is layered over `default.toml`; it must exist.
    pub profile: Option<String>,
    /// One more TOML file, layered over the directory's files; it must exist.
    pub config_file: Option<PathBuf>,
    /// Values given as flags: the top layer.
    pub flags: FlagOverrides,
}

/// A validated configuration and the layers it came from (for `print-config --sources`).
#[derive(Debug)]
pub struct Loaded {
    /// The merged, validated configuration.
    pub config: Config,
    /// The layered figment, to look each value's source up.
    pub figment: Figment,
}

impl Loaded {
    /// The file `key`'s value was read from, when it came from a secret file (the
    /// secrets directory, or `INFERGATE_<KEY>_FILE`).
    pub fn file_of(&self, key: &str) -> Option<PathBuf> {
        let metadata = self.figment.find_metadata(key)?;
        if metadata.name != layers::SECRET_NAME {
            return None;
        }
        metadata
            .source
            .as_ref()
            .and_then(figment::Source::file_path)
            .map(Path::to_owned)
    }
}

/// Most errors reported before giving up (each round fixes one bad value and retries).
const MAX_ERRORS: usize = 64;

/// Loads, layers and validates the configuration, reporting every error found.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let mut figment = Figment::from(layers::defaults());
    // default.toml is optional (the built-in defaults are complete); a file asked for by
    // name (profile, --config) must exist.
    let default_file = opts.config_dir.join("default.toml");
    if default_file.exists() {
        figment = figment.merge(Toml::file_exact(default_file));
    }
    if let Some(profile) = &opts.profile {
        let path = opts.config_dir.join(format!("{profile}.toml"));
        if require_file(&path, "profile file", &mut errors) {
            figment = figment.merge(Toml::file_exact(path));
        }
    }
    if let Some(path) = &opts.config_file
        && require_file(path, "config file", &mut errors)
    {
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(layers::env());
    // The secrets directory may itself come from any layer below the secrets.
    let secrets_dir = figment
        .extract_inner::<PathBuf>("secrets.dir")
        .unwrap_or_else(|_| SecretsSection::default().dir);
    for provider in secrets::discover(&secrets_dir) {
        figment = figment.merge(provider);
    }
    figment = figment.merge(layers::flags(&opts.flags));

    let config = extract_all(&figment, &mut errors);
    if let Some(config) = &config {
        errors.extend(config.validate().into_iter().map(|invalid| ConfigError {
            key: invalid.key.to_owned(),
            message: invalid.message.to_owned(),
            source: layers::describe_key(&figment, invalid.key),
        }));
    }
    match (config, errors.is_empty()) {
        (Some(config), true) => Ok(Loaded { config, figment }),
        _ => Err(ConfigErrors(errors)),
    }
}

fn require_file(path: &Path, what: &str, errors: &mut Vec<ConfigError>) -> bool {
    let exists = path.is_file();
    if !exists {
        errors.push(ConfigError {
            key: String::new(),
            message: format!("{what} {} does not exist", path.display()),
            source: "the command line".to_owned(),
        });
    }
    exists
}

/// Extracts the config, collecting every bad value: after each error, the offending key
/// is reset to its default and extraction retried, so one typo does not hide the next.
fn extract_all(figment: &Figment, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let defaults = Figment::from(layers::defaults());
    let mut attempt = figment.clone();
    for _ in 0..MAX_ERRORS {
        match attempt.extract::<Config>() {
            Ok(config) => return Some(config),
            Err(err) => {
                let mut progressed = false;
                for e in err {
                    let report = layers::describe_error(&e);
                    if errors.contains(&report) {
                        continue;
                    }
                    errors.push(report);
                    if !e.path.is_empty() {
                        let key = e.path.join(".");
                        let reset =
                            defaults
                                .find_value(&key)
                                .unwrap_or(figment::value::Value::Empty(
                                    figment::value::Tag::Default,
                                    figment::value::Empty::None,
                                ));
                        attempt = attempt.merge(Serialized::global(&key, reset));
                        progressed = true;
                    }
                }
                if !progressed {
                    return None;
                }
            }
        }
    }
    None
}
