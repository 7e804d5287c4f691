//! The model repository: `<root>/<model>/<version>/{model.safetensors, manifest.json}` and
//! an optional `<root>/<model>/model.toml`, loaded at start beside the configured models
//! and reloaded without a restart — on a look every `repository.poll_interval_ms`, on
//! SIGHUP, and through the repository API (`load`, `unload`).
//!
//! A reload loads what changed (a version's files, by their [`scan::Stamp`]) on this
//! module's own thread, warms each new version with one inference through the compute
//! pool, then swaps the whole catalog at once: requests that already chose a version
//! finish on it, later ones see the new one. A version that fails to load is reported (the
//! index, the model's metadata, an ERROR, `infergate_model_load_failures_total`) and
//! retried only once its files change; the model's other versions, and every other
//! model, keep serving. [`RepoState`] holds the policy (pure, tested without threads); the
//! thread only looks, loads and swaps.
//!
//! A model whose `load` is `on_demand` is loaded once at a look to read what it is (its
//! files are checked as an eager model's are), then dropped: the catalog lists an
//! [`OnDemand`] handle for each version, and the first request that needs one asks this
//! thread for a load ([`demand`] decides when it runs and what it evicts); the load runs on
//! a blocking thread, measured ([`footprint`]), in one jemalloc arena for all loads
//! ([`load_arena`]); the cold request's pass is its first.

pub mod demand;
pub mod footprint;
pub mod load;
pub mod load_arena;
pub mod scan;
pub mod settings;
pub mod triton;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::background;
use crate::file_watch::{LookNow, Looks};
use crate::infer::manifest::ModelInfo;
use crate::infer::model::Model;
use crate::infer::model::on_demand::{OnDemand, Slot, SlotOptions};
use crate::infer::registry::{Catalog, FailedVersion, Origin, Served, ShadowPlan, Split, Unserved};
use crate::infer::{Infer, InferError};
use crate::metrics::{
    MODEL_LOAD_DURATION, MODEL_LOAD_FAILURES_TOTAL, MODEL_LOADS_TOTAL, MODEL_READY,
    REPOSITORY_MEMORY_BUDGET_BYTES, REPOSITORY_RELOADS_TOTAL,
};
use crate::repository::demand::{Demand, DemandSettings, LoadJob, LoadOutcome, OnDemandStats};
use crate::repository::footprint::Footprint;
use crate::repository::load::LoadOptions;
use crate::repository::scan::{ModelDir, Stamp, VersionDir};
use crate::repository::settings::{LoadPolicy, ModelSettings};

/// Why a repository request failed.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// No directory in the repository has that name.
    #[error("the repository has no model {0:?}")]
    UnknownModel(String),
    /// The model comes from the configuration, which the repository API does not change.
    #[error(
        "model {0:?} comes from the configuration, not the repository; it is loaded at start only"
    )]
    Configured(String),
    /// Loading failed; the model's other versions (if any) keep serving.
    #[error("model {name:?} failed to load: {reason}")]
    LoadFailed { name: String, reason: String },
    /// The repository directory cannot be read.
    #[error("cannot read the repository {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The repository's thread has stopped.
    #[error("the repository's thread has stopped")]
    Stopped,
    /// The repository's thread could not start.
    #[error("cannot start the repository's thread")]
    Spawn(#[from] background::SpawnError),
}

/// A loaded version (or, on demand, its handle) and the stamp of the files it came from.
struct Loaded {
    model: Arc<dyn Model>,
    stamp: Stamp,
    /// Its directory.
    path: PathBuf,
}

impl Loaded {
    fn slot(&self) -> Option<&Arc<Slot>> {
        self.model.on_demand().map(OnDemand::slot)
    }
}

/// One repository model as last reconciled.
#[derive(Default)]
struct Entry {
    loaded: BTreeMap<u64, Loaded>,
    /// Versions that failed to load, with the stamp they failed at (retried once it
    /// changes) and why.
    failed: BTreeMap<u64, (Stamp, String)>,
    /// The settings in force (the last good ones).
    settings: ModelSettings,
    /// Why the settings, or the model as a whole, cannot be used.
    problem: Option<String>,
    /// Unloaded through the API: not served until `load`.
    unloaded: bool,
    /// Versions `model.toml` names that are not served, as last warned about.
    missing: Vec<String>,
    /// Loaded through the repository API: on demand, pinned until `unload`.
    api_pinned: bool,
}

/// What a reconcile changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// `model:version` now served that were not.
    pub added: Vec<String>,
    /// `model:version` no longer served.
    pub removed: Vec<String>,
    /// `model:version` (or `model` for its settings) and why it failed this time.
    pub failed: Vec<(String, String)>,
}

impl Changes {
    /// Whether what is served changed.
    pub fn swapped(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty() || !self.failed.is_empty()
    }
}

/// Loads a version directory and makes it ready to serve.
#[allow(async_fn_in_trait)] // used with concrete types only
pub trait Loader {
    /// `name` at `version` from `dir`, warmed; the error says why not.
    async fn load(&self, name: &str, dir: &VersionDir) -> Result<Arc<dyn Model>, String>;
}

/// How versions on demand are made: the repository's default policy, and where their
/// handles ask for loads.
#[derive(Clone)]
pub struct OnDemandLink {
    /// The policy of a model whose `model.toml` does not say.
    pub default: LoadPolicy,
    /// The repository thread's end of every handle's asks.
    pub asks: mpsc::UnboundedSender<Arc<Slot>>,
}

/// The repository's models and the configured ones: what the catalog is built from.
pub struct RepoState {
    configured: Vec<Arc<dyn Model>>,
    entries: BTreeMap<String, Entry>,
    on_demand: Option<OnDemandLink>,
}

impl RepoState {
    /// A state serving only `configured` (the first of each input kind is its default);
    /// every repository model is loaded eagerly.
    pub fn new(configured: Vec<Arc<dyn Model>>) -> Self {
        Self {
            configured,
            entries: BTreeMap::new(),
            on_demand: None,
        }
    }

    /// Models whose policy is `on_demand` are served through handles that ask `link`.
    pub fn with_on_demand(self, link: OnDemandLink) -> Self {
        Self {
            on_demand: Some(link),
            ..self
        }
    }

    /// Every version served on demand: its slot, its model's name and its directory.
    pub fn on_demand_slots(&self) -> Vec<(Arc<Slot>, String, PathBuf)> {
        self.entries
            .iter()
            .filter(|(name, _)| !self.is_configured(name))
            .flat_map(|(name, entry)| {
                entry.loaded.values().filter_map(move |l| {
                    Some((Arc::clone(l.slot()?), name.clone(), l.path.clone()))
                })
            })
            .collect()
    }

    /// The on-demand handles of `name`'s versions.
    fn on_demand_versions(&self, name: &str) -> Vec<Arc<dyn Model>> {
        self.entries.get(name).map_or_else(Vec::new, |entry| {
            entry
                .loaded
                .values()
                .filter(|l| l.slot().is_some())
                .map(|l| Arc::clone(&l.model))
                .collect()
        })
    }

    fn is_configured(&self, name: &str) -> bool {
        self.configured.iter().any(|m| &*m.info().name == name)
    }

    /// Brings the models in `dirs` (one look; `only`: just this model, the others as they
    /// are) to what their directories and settings say.
    pub async fn reconcile(
        &mut self,
        dirs: Vec<ModelDir>,
        only: Option<&str>,
        loader: &impl Loader,
    ) -> Changes {
        let mut changes = Changes::default();
        let seen: BTreeSet<String> = dirs.iter().map(|d| d.name.clone()).collect();
        if only.is_none() {
            // Directories that are gone: their models go too.
            let gone: Vec<String> = self
                .entries
                .keys()
                .filter(|name| !seen.contains(*name))
                .cloned()
                .collect();
            for name in gone {
                if let Some(entry) = self.entries.remove(&name) {
                    for v in entry.loaded.keys() {
                        changes.removed.push(format!("{name}:{v}"));
                    }
                }
            }
        }
        for dir in dirs {
            if only.is_some_and(|o| o != dir.name) {
                continue;
            }
            let configured = self.is_configured(&dir.name);
            let entry = self.entries.entry(dir.name.clone()).or_default();
            if entry.unloaded {
                continue;
            }
            if configured {
                let reason = format!(
                    "a configured model is called {:?}; rename the repository's directory",
                    dir.name
                );
                if entry.problem.as_ref() != Some(&reason) {
                    changes.failed.push((dir.name.clone(), reason.clone()));
                }
                entry.problem = Some(reason);
                continue;
            }
            reconcile_model(&dir, entry, self.on_demand.as_ref(), loader, &mut changes).await;
        }
        changes
    }

    /// Marks `name` unloaded: it serves nothing until [`RepoState::mark_loadable`].
    fn unload(&mut self, name: &str) -> Changes {
        let mut changes = Changes::default();
        let entry = self.entries.entry(name.to_owned()).or_default();
        entry.unloaded = true;
        entry.api_pinned = false;
        for v in std::mem::take(&mut entry.loaded).into_keys() {
            changes.removed.push(format!("{name}:{v}"));
        }
        entry.failed.clear();
        changes
    }

    /// Lets `name` be loaded again: after an `unload`, and versions that failed are
    /// tried again even if their files did not change (an explicit load is a retry).
    fn mark_loadable(&mut self, name: &str) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.unloaded = false;
            entry.failed.clear();
            entry.api_pinned = true;
        }
    }

    /// Why `name` serves nothing or less than asked (for the load API's answer).
    fn problem_of(&self, name: &str) -> Option<String> {
        let entry = self.entries.get(name)?;
        if let Some(problem) = &entry.problem {
            return Some(problem.clone());
        }
        let failed = entry.failed.iter().next()?;
        Some(format!("version {}: {}", failed.0, failed.1.1))
    }

    /// The catalog: the configured models, then the repository's by name.
    pub fn catalog(&self) -> Catalog {
        let mut models: Vec<Served> = self
            .configured
            .iter()
            .map(|m| {
                Served::new(
                    m.info().name.to_string(),
                    Origin::Config,
                    vec![Arc::clone(m)],
                )
            })
            .collect();
        for (name, entry) in &self.entries {
            // A directory named as a configured model is reported, never served.
            if !self.is_configured(name) {
                models.push(served(name, entry));
            }
        }
        Catalog::new(models)
    }
}

/// One repository model as the catalog serves it.
fn served(name: &str, entry: &Entry) -> Served {
    let versions: Vec<Arc<dyn Model>> = entry
        .loaded
        .values()
        .rev()
        .map(|l| Arc::clone(&l.model))
        .collect();
    let mut served = Served::new(name.to_owned(), Origin::Repository, versions);
    served.failed = entry
        .failed
        .iter()
        .map(|(v, (_, reason))| FailedVersion {
            version: v.to_string(),
            reason: reason.clone(),
        })
        .collect();
    let index_of = |version: &str| {
        served
            .versions
            .iter()
            .position(|m| &*m.info().version == version)
    };
    let settings = &entry.settings;
    let weights: Vec<(usize, u32)> = settings
        .traffic
        .iter()
        .filter_map(|(v, w)| Some((index_of(v)?, *w)))
        .collect();
    let split = (!settings.traffic.is_empty())
        .then(|| Split::new(weights))
        .flatten();
    let shadow = settings
        .shadow
        .as_ref()
        .and_then(|s| Some(ShadowPlan::new(index_of(&s.version)?, s.share)));
    served.split = split;
    served.shadow = shadow;
    served.problem = if entry.unloaded {
        Some(Unserved::Unloaded)
    } else if let Some(problem) = &entry.problem {
        Some(Unserved::Failed(problem.clone()))
    } else if served.versions.is_empty() {
        Some(Unserved::Failed(match entry.failed.iter().next() {
            Some((v, (_, reason))) => format!("version {v}: {reason}"),
            None => "no version directory (<model>/<version>/) holds a model".to_owned(),
        }))
    } else {
        None
    };
    served
}

/// Brings one model to what its directory says.
async fn reconcile_model(
    dir: &ModelDir,
    entry: &mut Entry,
    link: Option<&OnDemandLink>,
    loader: &impl Loader,
    changes: &mut Changes,
) {
    let name = &dir.name;
    match &dir.settings {
        Ok(settings) => {
            entry.settings = settings.clone();
            entry.problem = None;
        }
        Err(reason) => {
            // The last good settings stay in force; the loaded versions keep serving.
            if entry.problem.as_ref() != Some(reason) {
                changes.failed.push((name.clone(), reason.clone()));
            }
            entry.problem = Some(reason.clone());
            return;
        }
    }
    let numbers: Vec<u64> = dir.versions.iter().map(|v| v.number).collect();
    let wanted = entry.settings.select(&numbers);
    // Versions the policy no longer wants (or whose directory is gone) stop serving.
    let dropped: Vec<u64> = entry
        .loaded
        .keys()
        .filter(|v| !wanted.contains(v))
        .copied()
        .collect();
    for v in dropped {
        entry.loaded.remove(&v);
        changes.removed.push(format!("{name}:{v}"));
    }
    entry.failed.retain(|v, _| wanted.contains(v));
    let policy = entry.settings.load;
    let link = link.filter(|l| policy.unwrap_or(l.default) == LoadPolicy::OnDemand);
    let (pinned, idle_unload) = (
        entry.settings.pinned || entry.api_pinned,
        entry.settings.idle_unload_s.map(Duration::from_secs),
    );
    let slot_opts = |stamp: &Stamp| SlotOptions {
        pinned,
        idle_unload,
        expected_bytes: stamp.bytes(),
    };
    // What model.toml says of pinning and idleness applies at once to loaded handles.
    for l in entry.loaded.values() {
        if let Some(slot) = l.slot() {
            let opts = slot_opts(&l.stamp);
            slot.set_pinned(opts.pinned);
            slot.set_idle_unload(opts.idle_unload);
        }
    }
    for version in dir.versions.iter().filter(|v| wanted.contains(&v.number)) {
        let v = version.number;
        if entry.loaded.get(&v).is_some_and(|l| {
            // The same files under the same policy.
            l.stamp == version.stamp && l.slot().is_some() == link.is_some()
        }) || entry
            .failed
            .get(&v)
            .is_some_and(|(s, _)| *s == version.stamp)
        {
            continue;
        }
        let loaded = loader.load(name, version).await.and_then(|model| {
            match unlike_the_others(&entry.loaded, v, model.info()) {
                Some(why) => Err(why),
                None => Ok(model),
            }
        });
        match loaded {
            Ok(model) => {
                entry.failed.remove(&v);
                // On demand: what the load said of the model is kept, the model is not.
                let model: Arc<dyn Model> = match link {
                    Some(link) => Arc::new(OnDemand::new(Slot::new(
                        model.info().clone(),
                        slot_opts(&version.stamp),
                        link.asks.clone(),
                    ))),
                    None => model,
                };
                let replaced = entry
                    .loaded
                    .insert(
                        v,
                        Loaded {
                            model,
                            stamp: version.stamp.clone(),
                            path: version.path.clone(),
                        },
                    )
                    .is_some();
                if !replaced {
                    changes.added.push(format!("{name}:{v}"));
                } else {
                    changes.added.push(format!("{name}:{v} (files replaced)"));
                }
            }
            Err(reason) => {
                // A version already loaded keeps serving what it loaded: a broken copy
                // over a working version takes nothing down.
                changes.failed.push((format!("{name}:{v}"), reason.clone()));
                entry.failed.insert(v, (version.stamp.clone(), reason));
            }
        }
    }
    let served: Vec<String> = entry.loaded.keys().map(u64::to_string).collect();
    let missing = entry.settings.missing_versions(&served);
    // Said once, not at every look.
    if !missing.is_empty() && missing != entry.missing {
        tracing::warn!(
            model = %name,
            versions = ?missing,
            "model.toml's traffic or shadow names versions that are not served; they get no traffic"
        );
    }
    entry.missing = missing;
}

/// Why `info` (version `v`) cannot serve beside the model's other loaded versions: they take
/// another kind of input or answer another way. Clients, a canary split and a shadow
/// comparison all count on every version of a model being asked and answering alike.
fn unlike_the_others(loaded: &BTreeMap<u64, Loaded>, v: u64, info: &ModelInfo) -> Option<String> {
    let (other, theirs) = loaded
        .iter()
        .filter(|(u, _)| **u != v)
        .map(|(u, l)| (*u, l.model.info()))
        .find(|(_, theirs)| (theirs.kind(), theirs.task) != (info.kind(), info.task))?;
    Some(format!(
        "version {v} takes {:?} input for a {:?}, version {other} takes {:?} for a {:?}: a \
         model's versions must take the same input and answer alike",
        info.kind(),
        info.task,
        theirs.kind(),
        theirs.task
    ))
}

/// What starts the repository.
pub struct RepositoryParts {
    /// The repository directory.
    pub root: PathBuf,
    /// Between looks; `None`: only SIGHUP and the API.
    pub poll_interval: Option<Duration>,
    /// How versions are loaded.
    pub load: LoadOptions,
    /// The configured models, served beside the repository's.
    pub configured: Vec<Arc<dyn Model>>,
    /// The policy of a model whose `model.toml` does not say.
    pub default_load: LoadPolicy,
    /// How loads on demand run.
    pub demand: DemandSettings,
}

/// How long the API's load waits for a version on demand to load.
const API_LOAD_WAIT: Duration = Duration::from_secs(300);

enum Command {
    Load {
        name: String,
        /// The model's versions on demand, to wait for.
        reply: oneshot::Sender<Result<Vec<Arc<dyn Model>>, RepositoryError>>,
    },
    Unload {
        name: String,
        reply: oneshot::Sender<Result<(), RepositoryError>>,
    },
}

/// The handle to the repository's thread: the API's load and unload, and SIGHUP's look.
pub struct Repository {
    commands: mpsc::Sender<Command>,
    look: LookNow,
    stats: Arc<std::sync::Mutex<OnDemandStats>>,
}

impl Repository {
    /// Starts the thread, which loads the repository into `infer` before this returns
    /// (failures are reported, never fatal).
    pub fn start(parts: RepositoryParts, infer: Arc<Infer>) -> Result<Self, RepositoryError> {
        let (commands, rx) = mpsc::channel(16);
        let look = LookNow::new();
        let (started_tx, started) = std::sync::mpsc::channel();
        let thread_look = look.clone();
        let stats = Arc::new(std::sync::Mutex::new(OnDemandStats::default()));
        let thread_stats = Arc::clone(&stats);
        background::spawn("infergate-repo", move || {
            run(parts, infer, thread_look, rx, started_tx, thread_stats)
        })?;
        started.recv().map_err(|_| RepositoryError::Stopped)??;
        Ok(Self {
            commands,
            look,
            stats,
        })
    }

    /// The loads on demand so far.
    pub fn on_demand_stats(&self) -> OnDemandStats {
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fires a look now (SIGHUP).
    pub fn look_now(&self) -> LookNow {
        self.look.clone()
    }

    /// Loads (or reloads) `name` from its directory, also after an `unload`; resolves
    /// once it serves, or with why it does not. A model on demand is loaded now and
    /// pinned (never evicted) until `unload`.
    pub async fn load(&self, name: &str) -> Result<(), RepositoryError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Load {
                name: name.to_owned(),
                reply,
            })
            .await
            .map_err(|_| RepositoryError::Stopped)?;
        let on_demand = answer.await.map_err(|_| RepositoryError::Stopped)??;
        // Waited for here, not on the repository's thread, which runs the loads.
        let until = Instant::now() + API_LOAD_WAIT;
        for version in on_demand {
            if let Some(handle) = version.on_demand() {
                handle
                    .resident(until)
                    .await
                    .map_err(|e| RepositoryError::LoadFailed {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    })?;
            }
        }
        Ok(())
    }

    /// Stops serving `name` until it is loaded again; requests in flight finish.
    pub async fn unload(&self, name: &str) -> Result<(), RepositoryError> {
        self.ask(|reply| Command::Unload {
            name: name.to_owned(),
            reply,
        })
        .await
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), RepositoryError>>) -> Command,
    ) -> Result<(), RepositoryError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| RepositoryError::Stopped)?;
        answer.await.map_err(|_| RepositoryError::Stopped)?
    }
}

/// Loads with [`load::load_version`] on this thread, then warms through the compute pool.
struct PoolLoader {
    infer: Arc<Infer>,
    opts: LoadOptions,
}

impl Loader for PoolLoader {
    async fn load(&self, name: &str, dir: &VersionDir) -> Result<Arc<dyn Model>, String> {
        let model = load::load_version(name, &dir.number.to_string(), &dir.path, &self.opts)?;
        self.warm(&model).await?;
        Ok(model)
    }
}

impl PoolLoader {
    /// One warm-up inference through the compute pool.
    async fn warm(&self, model: &Arc<dyn Model>) -> Result<(), String> {
        // A busy compute queue is no reason to fail a load: try again for a few seconds.
        for _ in 0..50 {
            match self.infer.warm_up(model).await {
                Ok(()) => return Ok(()),
                Err(InferError::Overloaded { .. }) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("warm-up inference failed: {e}")),
            }
        }
        Err("warm-up inference: the compute queue stayed full".to_owned())
    }

    /// A load on demand: the files read and the engine built on a blocking thread (this
    /// thread goes on answering asks and running other loads), what that kept measured
    /// there. The model and the bytes it keeps, or why not.
    async fn load_on_demand(&self, job: &LoadJob) -> LoadOutcome {
        let listed = job.slot.info();
        let (name, version, path) = (
            job.name.clone(),
            listed.version.to_string(),
            job.path.clone(),
        );
        let opts = self.opts.clone();
        let built = tokio::task::spawn_blocking(move || {
            load_arena::enter();
            let footprint = Footprint::start();
            let model = load::load_version(&name, &version, &path, &opts)?;
            Ok::<_, String>((model, footprint.kept()))
        })
        .await
        .map_err(|e| format!("the load stopped: {e}"))??;
        let (model, kept) = built;
        if model.info().revision != listed.revision {
            // Changed since the look that listed it: the next look lists the new files.
            return Err("its files changed since they were last looked at".to_owned());
        }
        // No warm-up of its own: these very files (the revision says so) were built and
        // run at the look that listed them, so the cold request's own pass is the first,
        // and the request waits for one forward pass, not two.
        Ok((model, kept.filter(|b| *b > 0).unwrap_or(job.slot.bytes())))
    }
}

/// The repository's thread: looks, API commands, and the loads on demand.
struct Thread {
    state: RepoState,
    infer: Arc<Infer>,
    loader: Rc<PoolLoader>,
    demand: Demand,
    loads: JoinSet<(LoadJob, LoadOutcome, Duration)>,
    served: BTreeSet<(String, String)>,
    stats: Arc<std::sync::Mutex<OnDemandStats>>,
}

impl Thread {
    /// Swaps the catalog in and lists the versions on demand.
    fn publish(&mut self, changes: &Changes, trigger: &'static str) {
        publish(&self.state, &self.infer, changes, &mut self.served, trigger);
        self.demand
            .list(self.state.on_demand_slots(), Instant::now());
        self.share_stats();
    }

    /// Starts the loads on demand that can start.
    fn start_loads(&mut self) {
        for job in self.demand.start(Instant::now()) {
            let loader = Rc::clone(&self.loader);
            self.loads.spawn_local(async move {
                let started = Instant::now();
                let outcome = loader.load_on_demand(&job).await;
                (job, outcome, started.elapsed())
            });
        }
        self.share_stats();
    }

    /// A load on demand ended.
    fn finished(&mut self, job: LoadJob, outcome: LoadOutcome, took: Duration) {
        let info = job.slot.info();
        let model = info.name.to_string();
        let result = if outcome.is_ok() { "ok" } else { "error" };
        metrics::counter!(MODEL_LOADS_TOTAL, "model" => model.clone(), "outcome" => result)
            .increment(1);
        metrics::histogram!(MODEL_LOAD_DURATION, "model" => model.clone())
            .record(took.as_secs_f64());
        match &outcome {
            Ok((_, bytes)) => tracing::info!(
                model = %model,
                version = %info.version,
                bytes,
                ms = took.as_millis() as u64,
                "loaded on demand"
            ),
            Err(reason) => {
                metrics::counter!(MODEL_LOAD_FAILURES_TOTAL, "model" => model.clone()).increment(1);
                tracing::error!(
                    model = %model,
                    version = %info.version,
                    reason = %reason,
                    "load on demand failed; refused with Retry-After until its backoff passes \
                     or its files change"
                );
            }
        }
        self.demand.finished(&job.slot, outcome, Instant::now());
        self.start_loads();
    }

    fn share_stats(&self) {
        *self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = self.demand.stats();
    }
}

async fn run(
    parts: RepositoryParts,
    infer: Arc<Infer>,
    look: LookNow,
    mut commands: mpsc::Receiver<Command>,
    started: std::sync::mpsc::Sender<Result<(), RepositoryError>>,
    stats: Arc<std::sync::Mutex<OnDemandStats>>,
) {
    let RepositoryParts {
        root,
        poll_interval,
        load,
        configured,
        default_load,
        demand,
    } = parts;
    metrics::gauge!(REPOSITORY_MEMORY_BUDGET_BYTES).set(demand.budget as f64);
    let (asks, mut asked) = mpsc::unbounded_channel();
    let mut t = Thread {
        state: RepoState::new(configured).with_on_demand(OnDemandLink {
            default: default_load,
            asks,
        }),
        loader: Rc::new(PoolLoader {
            infer: Arc::clone(&infer),
            opts: load,
        }),
        infer,
        demand: Demand::new(demand, Instant::now()),
        loads: JoinSet::new(),
        served: BTreeSet::new(),
        stats,
    };
    match scan::scan(&root) {
        Ok(dirs) => {
            let loader = Rc::clone(&t.loader);
            let changes = t.state.reconcile(dirs, None, &*loader).await;
            t.publish(&changes, "start");
            let _ = started.send(Ok(()));
        }
        Err(source) => {
            let _ = started.send(Err(RepositoryError::Unreadable { path: root, source }));
            return;
        }
    }
    // Polling off: a look a year, SIGHUP and the API do the rest.
    let interval = poll_interval.unwrap_or(Duration::from_secs(365 * 86_400));
    let mut looks = Looks::new(interval, look);
    loop {
        // Idle unloads once a second; a load waiting for room looks again soon, since
        // nothing tells this thread when a request lets go of a version.
        let tick = if t.demand.waiting() {
            Duration::from_millis(10)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            Some(slot) = asked.recv() => {
                t.demand.ask(slot, Instant::now());
                t.start_loads();
            }
            Some(done) = t.loads.join_next(), if !t.loads.is_empty() => {
                match done {
                    Ok((job, outcome, took)) => t.finished(job, outcome, took),
                    Err(e) => tracing::error!(error = %e, "a load on demand stopped"),
                }
            }
            () = tokio::time::sleep(tick) => {
                t.demand.tick(Instant::now());
                t.start_loads();
            }
            asked_look = looks.next() => {
                match scan::scan(&root) {
                    Ok(dirs) => {
                        let loader = Rc::clone(&t.loader);
                        let changes = t.state.reconcile(dirs, None, &*loader).await;
                        let trigger = if asked_look { "signal" } else { "poll" };
                        t.publish(&changes, trigger);
                    }
                    Err(e) => tracing::error!(
                        path = %root.display(),
                        error = %e,
                        "cannot read the model repository; serving what is loaded"
                    ),
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { break };
                match command {
                    Command::Load { name, reply } => {
                        let loader = Rc::clone(&t.loader);
                        let result = api_load(&mut t.state, &root, &name, &loader).await;
                        let (Ok(changes) | Err((_, changes))) = &result;
                        t.publish(changes, "api");
                        let result = result.map(|_| t.state.on_demand_versions(&name));
                        let _ = reply.send(result.map_err(|(e, _)| e));
                    }
                    Command::Unload { name, reply } => {
                        let result = if t.state.is_configured(&name) {
                            Err(RepositoryError::Configured(name))
                        } else if !root.join(&name).is_dir() && !t.state.entries.contains_key(&name) {
                            Err(RepositoryError::UnknownModel(name))
                        } else {
                            let changes = t.state.unload(&name);
                            t.publish(&changes, "api");
                            tracing::info!(model = %name, "unloaded through the repository API");
                            Ok(())
                        };
                        let _ = reply.send(result);
                    }
                }
            }
        }
    }
}

/// The API's load: `name`'s directory looked at now and loaded.
async fn api_load(
    state: &mut RepoState,
    root: &std::path::Path,
    name: &str,
    loader: &PoolLoader,
) -> Result<Changes, (RepositoryError, Changes)> {
    if state.is_configured(name) {
        return Err((
            RepositoryError::Configured(name.to_owned()),
            Changes::default(),
        ));
    }
    let dir = root.join(name);
    if !scan::is_model_name(name) || !dir.is_dir() {
        return Err((
            RepositoryError::UnknownModel(name.to_owned()),
            Changes::default(),
        ));
    }
    state.mark_loadable(name);
    let one = scan::scan_model(name.to_owned(), &dir);
    let changes = state.reconcile(vec![one], Some(name), loader).await;
    match state.problem_of(name) {
        Some(reason) => Err((
            RepositoryError::LoadFailed {
                name: name.to_owned(),
                reason,
            },
            changes,
        )),
        None => Ok(changes),
    }
}

/// Swaps the catalog in, and says so: the log, the gauges, the counters.
fn publish(
    state: &RepoState,
    infer: &Infer,
    changes: &Changes,
    served: &mut BTreeSet<(String, String)>,
    trigger: &'static str,
) {
    for (what, reason) in &changes.failed {
        let model = what.split(':').next().unwrap_or(what).to_owned();
        metrics::counter!(MODEL_LOAD_FAILURES_TOTAL, "model" => model.clone()).increment(1);
        tracing::error!(
            model = %model,
            what = %what,
            reason = %reason,
            "model failed to load; its other versions and every other model keep serving"
        );
    }
    if !changes.swapped() && trigger != "start" {
        return;
    }
    let catalog = state.catalog();
    let now: BTreeSet<(String, String)> = catalog
        .loaded()
        .map(|m| (m.info().name.to_string(), m.info().version.to_string()))
        .collect();
    for (name, version) in served.difference(&now) {
        metrics::gauge!(MODEL_READY, "model" => name.clone(), "version" => version.clone())
            .set(0.0);
    }
    for (name, version) in &now {
        metrics::gauge!(MODEL_READY, "model" => name.clone(), "version" => version.clone())
            .set(1.0);
    }
    *served = now;
    infer.swap(catalog);
    if changes.swapped() {
        metrics::counter!(REPOSITORY_RELOADS_TOTAL, "trigger" => trigger).increment(1);
        tracing::info!(
            trigger,
            added = ?changes.added,
            removed = ?changes.removed,
            failed = changes.failed.len(),
            "model repository reloaded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::manifest::InputKind;
    use crate::infer::model::testing::unrun;
    use crate::repository::settings::FILE_NAME;

    /// Loads a version unless its directory holds a file called `broken`.
    struct FakeLoader;

    impl Loader for FakeLoader {
        async fn load(&self, name: &str, dir: &VersionDir) -> Result<Arc<dyn Model>, String> {
            if dir.path.join("broken").exists() {
                return Err("model.safetensors: broken".into());
            }
            Ok(unrun(name, &dir.number.to_string()))
        }
    }

    fn version(root: &std::path::Path, model: &str, v: u32) -> PathBuf {
        let dir = root.join(model).join(v.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), b"w").unwrap();
        dir
    }

    async fn look(state: &mut RepoState, root: &std::path::Path) -> Changes {
        state
            .reconcile(scan::scan(root).unwrap(), None, &FakeLoader)
            .await
    }

    fn versions(catalog: &Catalog, name: &str) -> Vec<String> {
        catalog
            .get(name)
            .unwrap()
            .versions
            .iter()
            .map(|m| m.info().version.to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_new_version_replaces_the_old_under_the_default_policy() {
        let root = tempfile::tempdir().unwrap();
        version(root.path(), "iris", 1);
        let mut state = RepoState::new(Vec::new());
        let changes = look(&mut state, root.path()).await;
        assert_eq!(changes.added, ["iris:1"]);
        assert_eq!(look(&mut state, root.path()).await, Changes::default());

        version(root.path(), "iris", 2);
        let changes = look(&mut state, root.path()).await;
        assert_eq!(changes.added, ["iris:2"]);
        assert_eq!(changes.removed, ["iris:1"]);
        assert_eq!(versions(&state.catalog(), "iris"), ["2"]);
    }

    #[tokio::test]
    async fn a_broken_model_is_reported_and_the_others_serve() {
        let root = tempfile::tempdir().unwrap();
        version(root.path(), "good", 1);
        let broken = version(root.path(), "bad", 1);
        std::fs::write(broken.join("broken"), b"").unwrap();
        let mut state = RepoState::new(Vec::new());
        let changes = look(&mut state, root.path()).await;
        assert_eq!(changes.added, ["good:1"]);
        assert_eq!(changes.failed.len(), 1);
        let catalog = state.catalog();
        assert!(catalog.get("good").unwrap().is_available());
        let bad = catalog.get("bad").unwrap();
        assert!(!bad.is_available());
        assert!(bad.problem.as_ref().unwrap().reason().contains("broken"));
        assert!(matches!(
            catalog.choose(Some("bad"), None, InputKind::Features),
            Err(InferError::Unavailable { .. })
        ));
        // The same broken files are not tried (nor reported) again on every look.
        assert_eq!(look(&mut state, root.path()).await, Changes::default());
        // An explicit load tries again, files changed or not.
        state.mark_loadable("bad");
        assert_eq!(look(&mut state, root.path()).await.failed.len(), 1);
        // Fixed: it serves.
        std::fs::remove_file(broken.join("broken")).unwrap();
        assert_eq!(look(&mut state, root.path()).await.added, ["bad:1"]);
    }

    #[tokio::test]
    async fn a_broken_copy_over_a_serving_version_keeps_the_loaded_one() {
        let root = tempfile::tempdir().unwrap();
        let v1 = version(root.path(), "m", 1);
        let mut state = RepoState::new(Vec::new());
        look(&mut state, root.path()).await;
        std::fs::write(v1.join("broken"), b"").unwrap();
        let changes = look(&mut state, root.path()).await;
        assert_eq!(changes.failed.len(), 1);
        let catalog = state.catalog();
        assert_eq!(versions(&catalog, "m"), ["1"]);
        assert!(
            catalog.get("m").unwrap().failed[0]
                .reason
                .contains("broken")
        );
    }

    #[tokio::test]
    async fn settings_choose_versions_split_and_shadow() {
        let root = tempfile::tempdir().unwrap();
        for v in 1..=3 {
            version(root.path(), "m", v);
        }
        std::fs::write(
            root.path().join("m").join(FILE_NAME),
            "[version_policy]\nlatest = 2\n[traffic]\n\"3\" = 3\n\"2\" = 1\n[shadow]\nversion = \"2\"\nshare = 1.0\n",
        )
        .unwrap();
        let mut state = RepoState::new(Vec::new());
        look(&mut state, root.path()).await;
        let catalog = state.catalog();
        assert_eq!(versions(&catalog, "m"), ["3", "2"]);
        let picks: Vec<String> = (0..400)
            .map(|_| {
                let c = catalog
                    .choose(Some("m"), None, InputKind::Features)
                    .unwrap();
                c.model.info().version.to_string()
            })
            .collect();
        assert_eq!(picks.iter().filter(|v| *v == "2").count(), 100);
        let c = catalog
            .choose(Some("m"), Some("3"), InputKind::Features)
            .unwrap();
        assert_eq!(&*c.shadow.unwrap().info().version, "2");

        // Broken settings keep the last good ones in force, and are reported.
        std::fs::write(
            root.path().join("m").join(FILE_NAME),
            "[version_policy]\nlatest = 0\n",
        )
        .unwrap();
        let changes = look(&mut state, root.path()).await;
        assert_eq!(changes.failed.len(), 1);
        assert_eq!(versions(&state.catalog(), "m"), ["3", "2"]);
    }

    #[tokio::test]
    async fn unload_and_load_and_vanished_directories() {
        let root = tempfile::tempdir().unwrap();
        version(root.path(), "m", 1);
        version(root.path(), "n", 1);
        let mut state = RepoState::new(Vec::new());
        look(&mut state, root.path()).await;
        assert_eq!(state.unload("m").removed, ["m:1"]);
        // A look does not bring an unloaded model back.
        assert_eq!(look(&mut state, root.path()).await, Changes::default());
        let catalog = state.catalog();
        assert_eq!(catalog.get("m").unwrap().problem, Some(Unserved::Unloaded));
        state.mark_loadable("m");
        assert_eq!(look(&mut state, root.path()).await.added, ["m:1"]);
        std::fs::remove_dir_all(root.path().join("n")).unwrap();
        assert_eq!(look(&mut state, root.path()).await.removed, ["n:1"]);
        assert!(state.catalog().get("n").is_none());
    }

    #[tokio::test]
    async fn a_repository_model_never_shadows_a_configured_one() {
        let root = tempfile::tempdir().unwrap();
        version(root.path(), "iris", 1);
        let configured: Arc<dyn Model> = FakeLoader
            .load(
                "iris",
                &VersionDir {
                    number: 9,
                    path: root.path().to_owned(),
                    stamp: Stamp::default(),
                },
            )
            .await
            .unwrap();
        let mut state = RepoState::new(vec![configured]);
        let changes = look(&mut state, root.path()).await;
        assert_eq!(changes.failed.len(), 1);
        let catalog = state.catalog();
        assert_eq!(catalog.models()[0].origin, Origin::Config);
        assert_eq!(versions(&catalog, "iris"), ["9"]);
    }
}
