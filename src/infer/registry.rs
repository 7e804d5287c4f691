//! The models being served, by name and version: one immutable [`Catalog`] swapped whole
//! when the repository changes, so a request that picked a version keeps it (it holds the
//! model's `Arc`) while later requests see the new catalog.
//!
//! Per model: its loaded versions (newest first; the first is the default), why it or a
//! version is unavailable, a traffic split between versions (canary), and a shadow
//! version that a share of requests is mirrored to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::infer::InferError;
use crate::infer::manifest::InputKind;
use crate::infer::model::Model;

/// Where a served model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The configuration (`[model]`, `[image]`, the bundled models): loaded at start only.
    Config,
    /// The model repository (`repository.path`): reloaded on change.
    Repository,
}

/// Why a model, or one version of it, serves nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unserved {
    /// Loading failed; the reason, as the index, the metadata and the log say it.
    Failed(String),
    /// Unloaded through the repository API.
    Unloaded,
}

impl Unserved {
    /// Triton's state name for it.
    pub fn state(&self) -> &'static str {
        match self {
            Self::Failed(_) => "UNAVAILABLE",
            Self::Unloaded => "UNLOADED",
        }
    }

    /// What to tell a client.
    pub fn reason(&self) -> &str {
        match self {
            Self::Failed(reason) => reason,
            Self::Unloaded => "unloaded through the repository API",
        }
    }
}

/// A version that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedVersion {
    pub version: String,
    pub reason: String,
}

/// How requests that name no version are spread over a model's versions: smooth weighted
/// round-robin (nginx's), exact over every cycle of the weights' sum and interleaved
/// within it.
#[derive(Debug)]
pub struct Split {
    /// Version index (into [`Served::versions`]) and weight.
    weights: Vec<(usize, i64)>,
    current: Mutex<Vec<i64>>,
}

impl Split {
    /// A split over `weights` (version index, weight > 0); `None` when no weight is
    /// positive.
    pub fn new(weights: Vec<(usize, u32)>) -> Option<Self> {
        let weights: Vec<(usize, i64)> = weights
            .into_iter()
            .filter(|(_, w)| *w > 0)
            .map(|(i, w)| (i, i64::from(w)))
            .collect();
        if weights.is_empty() {
            return None;
        }
        let current = Mutex::new(vec![0; weights.len()]);
        Some(Self { weights, current })
    }

    /// The version index the next request goes to.
    pub fn pick(&self) -> usize {
        let total: i64 = self.weights.iter().map(|(_, w)| w).sum();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut best = 0;
        for (i, (_, w)) in self.weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        self.weights[best].0
    }

    /// The weights by version index.
    pub fn weights(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.weights
            .iter()
            .map(|&(i, w)| (i, u32::try_from(w).unwrap_or(u32::MAX)))
    }
}

/// A share of requests mirrored to a candidate version, picked evenly: request `n` is
/// mirrored when `floor((n + 1) * share)` passes a whole number, so over any `k` requests
/// the count is within one of `k * share`.
#[derive(Debug)]
pub struct ShadowPlan {
    /// Index into [`Served::versions`] of the candidate.
    pub version: usize,
    /// Share of requests mirrored, 0 to 1.
    pub share: f64,
    seen: AtomicU64,
}

impl ShadowPlan {
    /// Mirrors `share` of the requests to version index `version`.
    pub fn new(version: usize, share: f64) -> Self {
        Self {
            version,
            share: share.clamp(0.0, 1.0),
            seen: AtomicU64::new(0),
        }
    }

    /// Whether the next request is mirrored.
    pub fn sample(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.share).floor() > (n * self.share).floor()
    }
}

/// One model as served: its loaded versions and what is wrong with the rest.
#[derive(Debug)]
pub struct Served {
    /// The name clients pick it by.
    pub name: String,
    /// Where it comes from.
    pub origin: Origin,
    /// Loaded versions, newest first; the first answers requests that name no version
    /// (unless a split says otherwise).
    pub versions: Vec<Arc<dyn Model>>,
    /// Why nothing is served, when `versions` is empty; the last load failure otherwise
    /// (the loaded versions keep serving).
    pub problem: Option<Unserved>,
    /// Versions the policy wanted that failed to load.
    pub failed: Vec<FailedVersion>,
    /// The traffic split between versions, when configured.
    pub split: Option<Split>,
    /// The shadow version, when configured.
    pub shadow: Option<ShadowPlan>,
}

impl std::fmt::Debug for dyn Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = self.info();
        write!(f, "{}@{}", info.name, info.version)
    }
}

impl Served {
    /// A model with these versions and nothing else configured.
    pub fn new(name: String, origin: Origin, versions: Vec<Arc<dyn Model>>) -> Self {
        Self {
            name,
            origin,
            versions,
            problem: None,
            failed: Vec::new(),
            split: None,
            shadow: None,
        }
    }

    /// Whether any version serves.
    pub fn is_available(&self) -> bool {
        !self.versions.is_empty()
    }

    /// The input its versions take (`None` while none is loaded).
    pub fn kind(&self) -> Option<InputKind> {
        self.versions.first().map(|m| m.info().kind())
    }

    /// The loaded version called `version`.
    pub fn version(&self, version: &str) -> Option<&Arc<dyn Model>> {
        self.versions.iter().find(|m| &*m.info().version == version)
    }

    /// `version`, or as the split says, else the newest.
    fn route(&self, version: Option<&str>) -> Result<&Arc<dyn Model>, InferError> {
        let default = self.versions.first().ok_or_else(|| self.unavailable())?;
        Ok(match version {
            Some(v) => self.version(v).ok_or_else(|| unknown_version(self, v))?,
            None => match &self.split {
                Some(split) => self.versions.get(split.pick()).unwrap_or(default),
                None => default,
            },
        })
    }

    /// Triton's state name: `READY` while a version serves, else `UNAVAILABLE` or
    /// `UNLOADED`.
    pub fn state(&self) -> &'static str {
        match &self.problem {
            _ if self.is_available() => "READY",
            Some(problem) => problem.state(),
            None => "UNAVAILABLE",
        }
    }

    /// Why it serves nothing (`None` while a version serves).
    pub fn unserved_reason(&self) -> Option<&str> {
        if self.is_available() {
            return None;
        }
        Some(
            self.problem
                .as_ref()
                .map_or("no version is loaded", Unserved::reason),
        )
    }

    fn unavailable(&self) -> InferError {
        InferError::Unavailable {
            name: self.name.clone(),
            reason: self.unserved_reason().unwrap_or_default().to_owned(),
        }
    }
}

/// The model a request goes to, and the version it is mirrored to, if any.
#[derive(Clone)]
pub struct Chosen {
    /// The model (one version of it) that answers.
    pub model: Arc<dyn Model>,
    /// The candidate version this request is also run by, off the response path.
    pub shadow: Option<Arc<dyn Model>>,
}

/// Every served model, in order: the configured ones (the first of each input kind is
/// that kind's default), then the repository's by name.
#[derive(Debug, Default)]
pub struct Catalog {
    models: Vec<Served>,
}

impl Catalog {
    /// A catalog of these models, in this order.
    pub fn new(models: Vec<Served>) -> Self {
        Self { models }
    }

    /// Every model, available or not.
    pub fn models(&self) -> &[Served] {
        &self.models
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Option<&Served> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The default version of every available model, in catalog order.
    pub fn defaults(&self) -> impl Iterator<Item = &Arc<dyn Model>> {
        self.models.iter().filter_map(|m| m.versions.first())
    }

    /// Every loaded version of every model.
    pub fn loaded(&self) -> impl Iterator<Item = &Arc<dyn Model>> {
        self.models.iter().flat_map(|m| m.versions.iter())
    }

    /// The model a `kind` request goes to: `name` (or the default for `kind`, the first
    /// available model of that kind) at `version` (or as the split says, else the
    /// newest), and whether this request is mirrored to the shadow version.
    pub fn choose(
        &self,
        name: Option<&str>,
        version: Option<&str>,
        kind: InputKind,
    ) -> Result<Chosen, InferError> {
        let served = match name {
            None => self
                .models
                .iter()
                .find(|m| m.kind() == Some(kind))
                .ok_or_else(|| InferError::NoModelFor {
                    kind,
                    loaded: self.names(),
                })?,
            Some(name) => self.named(name)?,
        };
        let Some(default) = served.versions.first() else {
            return Err(served.unavailable());
        };
        let expects = default.info().kind();
        if expects != kind {
            return Err(InferError::WrongInput {
                model: served.name.clone(),
                expects,
                got: kind,
            });
        }
        let model = served.route(version)?;
        let shadow = served.shadow.as_ref().and_then(|plan| {
            let candidate = served.versions.get(plan.version)?;
            // Never mirrored to the version that answers; sampled only when it could be.
            (!Arc::ptr_eq(candidate, model) && plan.sample()).then(|| Arc::clone(candidate))
        });
        Ok(Chosen {
            model: Arc::clone(model),
            shadow,
        })
    }

    /// The model `name` at `version` (its default without one), for metadata.
    pub fn find(&self, name: &str, version: Option<&str>) -> Result<Arc<dyn Model>, InferError> {
        let served = self.named(name)?;
        let model = match version {
            Some(v) => served
                .version(v)
                .ok_or_else(|| unknown_version(served, v))?,
            None => served
                .versions
                .first()
                .ok_or_else(|| served.unavailable())?,
        };
        Ok(Arc::clone(model))
    }

    /// The version of `name` a request goes to: `version`, or as the split says, else the
    /// newest. For a request of several rows that must all go to one version.
    pub fn route(&self, name: &str, version: Option<&str>) -> Result<Arc<dyn Model>, InferError> {
        let served = self.named(name)?;
        served.route(version).map(Arc::clone)
    }

    fn named(&self, name: &str) -> Result<&Served, InferError> {
        self.get(name).ok_or_else(|| InferError::UnknownModel {
            name: name.to_owned(),
            loaded: self.names(),
        })
    }

    /// The names of every model, comma-separated, for error messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        names.join(", ")
    }
}

fn unknown_version(served: &Served, version: &str) -> InferError {
    if let Some(failed) = served.failed.iter().find(|f| f.version == version) {
        return InferError::Unavailable {
            name: served.name.clone(),
            reason: format!("version {version}: {}", failed.reason),
        };
    }
    let loaded: Vec<&str> = served.versions.iter().map(|m| &*m.info().version).collect();
    InferError::UnknownVersion {
        name: served.name.clone(),
        version: version.to_owned(),
        loaded: loaded.join(", "),
    }
}

/// The catalog in force, shared by every thread; a swap is one pointer store.
#[derive(Debug, Default)]
pub struct Registry {
    current: RwLock<Arc<Catalog>>,
}

impl Registry {
    /// A registry serving `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            current: RwLock::new(Arc::new(catalog)),
        }
    }

    /// The catalog in force now; it never changes under its holder.
    pub fn snapshot(&self) -> Arc<Catalog> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Serves `catalog` from now on; requests that already chose keep their model.
    pub fn swap(&self, catalog: Catalog) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::model::testing::unrun as model;

    #[test]
    fn a_split_is_exact_over_each_cycle_and_interleaved() {
        let split = Split::new(vec![(0, 9), (1, 1)]).unwrap();
        let picks: Vec<usize> = (0..2000).map(|_| split.pick()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 200);
        // Never two canary picks in a row at a 9:1 weight.
        assert!(picks.windows(2).all(|w| !(w[0] == 1 && w[1] == 1)));
        assert!(Split::new(vec![(0, 0)]).is_none());
    }

    #[test]
    fn a_shadow_share_is_within_one_of_exact() {
        let plan = ShadowPlan::new(1, 0.25);
        for k in [1u64, 3, 4, 10, 1000] {
            let plan = ShadowPlan::new(1, 0.25);
            let n = (0..k).filter(|_| plan.sample()).count() as f64;
            assert!((n - k as f64 * 0.25).abs() <= 1.0, "{k}: {n}");
        }
        assert!(!ShadowPlan::new(1, 0.0).sample());
        assert!(plan.sample() || plan.sample() || plan.sample() || plan.sample());
    }

    #[test]
    fn choosing_names_versions_splits_and_shadows() {
        let (v2, v1) = (model("m", "2"), model("m", "1"));
        let mut served = Served::new("m".into(), Origin::Repository, vec![v2.clone(), v1]);
        served.split = Split::new(vec![(0, 1), (1, 1)]);
        served.shadow = Some(ShadowPlan::new(0, 1.0));
        let mut broken = Served::new("broken".into(), Origin::Repository, Vec::new());
        broken.problem = Some(Unserved::Failed("bad file".into()));
        let catalog = Catalog::new(vec![served, broken]);

        let picked: Vec<String> = (0..4)
            .map(|_| {
                let c = catalog
                    .choose(Some("m"), None, InputKind::Features)
                    .unwrap();
                // The shadow never mirrors a request to the version that answers it.
                if let Some(s) = &c.shadow {
                    assert!(!Arc::ptr_eq(s, &c.model));
                }
                c.model.info().version.to_string()
            })
            .collect();
        assert_eq!(picked.iter().filter(|v| *v == "2").count(), 2);
        let c = catalog
            .choose(None, Some("2"), InputKind::Features)
            .unwrap();
        assert!(Arc::ptr_eq(&c.model, &v2));
        assert!(c.shadow.is_none());
        assert!(matches!(
            catalog.choose(Some("m"), Some("7"), InputKind::Features),
            Err(InferError::UnknownVersion { .. })
        ));
        assert!(matches!(
            catalog.choose(Some("broken"), None, InputKind::Features),
            Err(InferError::Unavailable { reason, .. }) if reason == "bad file"
        ));
        assert!(matches!(
            catalog.choose(Some("m"), None, InputKind::Image),
            Err(InferError::WrongInput { .. })
        ));
        assert!(matches!(
            catalog.choose(Some("nope"), None, InputKind::Features),
            Err(InferError::UnknownModel { .. })
        ));
    }

    #[test]
    fn a_swap_leaves_a_held_snapshot_alone() {
        let registry = Registry::new(Catalog::new(vec![Served::new(
            "m".into(),
            Origin::Config,
            vec![model("m", "1")],
        )]));
        let held = registry.snapshot();
        registry.swap(Catalog::default());
        assert_eq!(held.models().len(), 1);
        assert!(registry.snapshot().models().is_empty());
    }
}
