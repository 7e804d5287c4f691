//! A model's `model.toml` in the repository: which versions are served (the version
//! policy), how requests that name no version are split between them (canary), and which
//! version a share of them is mirrored to (shadow). Absent, the newest version serves all.
//!
//! ```toml
//! [version_policy]
//! latest = 2            # or: specific = ["1", "3"]   or: all = true
//!
//! [traffic]             # weights, by version; versions left out get none
//! "2" = 90
//! "1" = 10
//!
//! [shadow]
//! version = "3"         # must be a served version
//! share = 0.25          # of the requests, 0 to 1
//! ```
//!
//! And, before the tables, when its versions are loaded (see `repository.load`):
//!
//! ```toml
//! load = "on_demand"    # or "eager"; default: the repository's
//! pinned = true         # on demand: never evicted once loaded
//! idle_unload_s = 600   # on demand: unloaded after this long without a request
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

/// File name of the settings, in the model's directory.
pub const FILE_NAME: &str = "model.toml";

/// A model's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Which versions are loaded.
    pub version_policy: VersionPolicy,
    /// Traffic weights by version, for requests that name no version.
    pub traffic: BTreeMap<String, u32>,
    /// Mirroring to a candidate version.
    pub shadow: Option<ShadowSettings>,
    /// When its versions are loaded; unset: the repository's `load`.
    pub load: Option<LoadPolicy>,
    /// On demand: once loaded, never evicted for memory nor for idleness.
    pub pinned: bool,
    /// On demand: a version nobody asked for in this many seconds is unloaded.
    pub idle_unload_s: Option<u64>,
}

/// When a model's versions are loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPolicy {
    /// At start and at every change of its files; never evicted.
    #[default]
    Eager,
    /// Listed at start, loaded by the first request that needs it, evicted when memory
    /// runs short or when idle.
    OnDemand,
}

/// Triton's version policies: the newest `latest` versions, `specific` ones, or `all`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VersionPolicy {
    pub latest: Option<usize>,
    pub specific: Option<Vec<String>>,
    pub all: bool,
}

/// The shadow version and the share of requests mirrored to it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSettings {
    pub version: String,
    pub share: f64,
}

impl ModelSettings {
    /// Parses `model.toml`; the error names what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let settings: Self = toml::from_str(text).map_err(|e| format!("{FILE_NAME}: {e}"))?;
        settings.check().map_err(|e| format!("{FILE_NAME}: {e}"))?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), String> {
        let p = &self.version_policy;
        let chosen = usize::from(p.latest.is_some())
            + usize::from(p.specific.is_some())
            + usize::from(p.all);
        if chosen > 1 {
            return Err("version_policy takes one of latest, specific or all".into());
        }
        if p.latest == Some(0) {
            return Err("version_policy.latest must be at least 1".into());
        }
        if p.specific.as_ref().is_some_and(Vec::is_empty) {
            return Err("version_policy.specific names no version".into());
        }
        if !self.traffic.is_empty() && self.traffic.values().all(|w| *w == 0) {
            return Err("traffic gives every version a weight of 0".into());
        }
        if let Some(shadow) = &self.shadow
            && !(0.0..=1.0).contains(&shadow.share)
        {
            return Err("shadow.share must be between 0 and 1".into());
        }
        if self.idle_unload_s == Some(0) {
            return Err("idle_unload_s must be at least 1".into());
        }
        if self.load == Some(LoadPolicy::Eager) && (self.pinned || self.idle_unload_s.is_some()) {
            return Err(
                "pinned and idle_unload_s apply to load = \"on_demand\"; an eager model is \
                 always loaded"
                    .into(),
            );
        }
        Ok(())
    }

    /// The versions the policy serves, newest first, out of `available` (version
    /// numbers, any order).
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        let mut versions = available.to_vec();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.dedup();
        let p = &self.version_policy;
        if p.all {
            return versions;
        }
        if let Some(specific) = &p.specific {
            return versions
                .into_iter()
                .filter(|v| specific.iter().any(|s| s == &v.to_string()))
                .collect();
        }
        versions.truncate(p.latest.unwrap_or(1));
        versions
    }

    /// What the traffic split and the shadow name that `served` (the versions loaded)
    /// lacks: the operator is told, and the split or shadow waits for the version.
    pub fn missing_versions(&self, served: &[String]) -> Vec<String> {
        let named = self
            .traffic
            .keys()
            .chain(self.shadow.iter().map(|s| &s.version));
        let mut missing: Vec<String> = named.filter(|v| !served.contains(v)).cloned().collect();
        missing.dedup();
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_settings_the_newest_version_serves() {
        let s = ModelSettings::default();
        assert_eq!(s.select(&[1, 3, 2]), vec![3]);
        assert_eq!(s.select(&[]), Vec::<u64>::new());
    }

    #[test]
    fn policies_pick_latest_specific_or_all() {
        let latest = ModelSettings::parse("[version_policy]\nlatest = 2\n").unwrap();
        assert_eq!(latest.select(&[1, 10, 2]), vec![10, 2]);
        let specific =
            ModelSettings::parse("[version_policy]\nspecific = [\"1\", \"10\"]\n").unwrap();
        assert_eq!(specific.select(&[1, 10, 2]), vec![10, 1]);
        let all = ModelSettings::parse("[version_policy]\nall = true\n").unwrap();
        assert_eq!(all.select(&[1, 10, 2]), vec![10, 2, 1]);
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        for (text, says) in [
            ("[version_policy]\nlatest = 0\n", "at least 1"),
            ("[version_policy]\nlatest = 1\nall = true\n", "one of"),
            ("[traffic]\n\"1\" = 0\n", "weight of 0"),
            (
                "[shadow]\nversion = \"2\"\nshare = 1.5\n",
                "between 0 and 1",
            ),
            ("[shadow]\nversion = \"2\"\n", "share"),
            ("colour = \"blue\"\n", "unknown field"),
            ("load = \"lazy\"\n", "unknown variant"),
            ("idle_unload_s = 0\n", "at least 1"),
            ("load = \"eager\"\npinned = true\n", "on_demand"),
        ] {
            let err = ModelSettings::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn traffic_and_shadow_name_served_versions() {
        let s = ModelSettings::parse(
            "[version_policy]\nall = true\n[traffic]\n\"2\" = 9\n\"1\" = 1\n[shadow]\nversion = \"3\"\nshare = 0.5\n",
        )
        .unwrap();
        assert_eq!(
            s.missing_versions(&["2".into(), "1".into()]),
            vec!["3".to_owned()]
        );
        assert!(
            s.missing_versions(&["1".into(), "2".into(), "3".into()])
                .is_empty()
        );
    }
}
