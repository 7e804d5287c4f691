//! Loads on demand, as the repository's thread runs them: which asked-for versions start
//! loading (at most `max_concurrent_loads` at once, each only once the memory budget has
//! room for it), what is evicted to make that room, how long a failed load is refused, and
//! which versions are unloaded for idleness. A pure state driven by explicit `now`s: the
//! thread does the loading, this decides.
//!
//! Eviction picks the loaded version least worth keeping: idle time × bytes ÷ (1 + recent
//! uses), so a big version nobody asked for lately goes before a small busy one (the
//! GreedyDual-Size-Frequency idea; plain LRU ignores both size and popularity). A version
//! is never evicted while a request holds it, within `min_resident` of its load, or when
//! pinned; eager versions are not here at all.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::infer::model::Model;
use crate::infer::model::on_demand::Slot;
use crate::metrics::{MODEL_EVICTIONS_TOTAL, MODEL_MEMORY_BYTES, MODELS_LOADED};

/// How loads on demand are run.
#[derive(Debug, Clone, Copy)]
pub struct DemandSettings {
    /// Bytes the loaded versions may take in all; 0: no budget.
    pub budget: u64,
    /// Loads at once.
    pub max_concurrent_loads: usize,
    /// No eviction for memory within this of a load.
    pub min_resident: Duration,
    /// How long a failed load is refused at first; doubled per failure in a row.
    pub retry: Duration,
}

/// The longest a failed load is refused.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// How often recent uses are halved: popularity older than a few of these fades.
const USES_HALF_LIFE: Duration = Duration::from_secs(60);

/// Why a version was unloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// To make room in the budget.
    Memory,
    /// Nobody asked for it in its `idle_unload_s`.
    Idle,
    /// The repository API unloaded it, or its files changed or went.
    Unload,
}

impl Eviction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Idle => "idle",
            Self::Unload => "unload",
        }
    }
}

/// A version the catalog serves on demand, and where its files are.
struct Listed {
    slot: Arc<Slot>,
    name: String,
    path: PathBuf,
    /// Failed loads in a row.
    failures: u32,
}

/// How a load ended: the model and the bytes it keeps, or why it failed.
pub type LoadOutcome = Result<(Arc<dyn Model>, u64), String>;

/// A load to run: the version's slot, its name and its directory.
pub struct LoadJob {
    pub slot: Arc<Slot>,
    pub name: String,
    pub path: PathBuf,
}

/// Counts since start, for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemandTotals {
    /// Loads that ended with the version serving.
    pub loads: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Versions unloaded to make room.
    pub evicted_for_memory: u64,
    /// Versions unloaded for idleness.
    pub evicted_idle: u64,
}

/// The loads on demand as `/stats` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnDemandStats {
    /// `repository.memory_budget_bytes` (0: none).
    pub budget_bytes: u64,
    /// What the versions loaded on demand took at their loads, in all.
    pub resident_bytes: u64,
    /// Versions loaded on demand in memory now.
    pub loaded: usize,
    /// Versions served on demand, loaded or not.
    pub listed: usize,
    /// Counts since start.
    pub totals: DemandTotals,
}

/// The loads on demand of one repository.
pub struct Demand {
    cfg: DemandSettings,
    listed: Vec<Listed>,
    queue: VecDeque<Arc<Slot>>,
    running: Vec<Arc<Slot>>,
    last_halving: Instant,
    totals: DemandTotals,
}

impl Demand {
    /// Nothing listed, nothing loading.
    pub fn new(cfg: DemandSettings, now: Instant) -> Self {
        Self {
            cfg,
            listed: Vec::new(),
            queue: VecDeque::new(),
            running: Vec::new(),
            last_halving: now,
            totals: DemandTotals::default(),
        }
    }

    /// Where the loads on demand stand now.
    pub fn stats(&self) -> OnDemandStats {
        OnDemandStats {
            budget_bytes: self.cfg.budget,
            resident_bytes: self.loaded_bytes(),
            loaded: self.loaded().count(),
            listed: self.listed.len(),
            totals: self.totals,
        }
    }

    /// The versions served on demand from now on: `(slot, model name, directory)`. A
    /// version no longer among them (its files changed, or it was unloaded) is unloaded,
    /// and one still waiting for its load is refused for a second: its requests come back
    /// to the version listed now.
    pub fn list(&mut self, slots: Vec<(Arc<Slot>, String, PathBuf)>, now: Instant) {
        let old = std::mem::take(&mut self.listed);
        for gone in old
            .iter()
            .filter(|l| !slots.iter().any(|(s, _, _)| Arc::ptr_eq(s, &l.slot)))
        {
            self.evict(&gone.slot, Eviction::Unload);
        }
        self.listed = slots
            .into_iter()
            .map(|(slot, name, path)| {
                let failures = old
                    .iter()
                    .find(|l| Arc::ptr_eq(&l.slot, &slot))
                    .map_or(0, |l| l.failures);
                Listed {
                    slot,
                    name,
                    path,
                    failures,
                }
            })
            .collect();
        let listed = &self.listed;
        let (kept, gone): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|q| listed.iter().any(|l| Arc::ptr_eq(&l.slot, q)));
        self.queue = kept;
        for slot in gone {
            slot.set_failed(replaced(), now + Duration::from_secs(1));
        }
        self.publish();
    }

    /// A request asked for `slot`'s load (it is `Loading` now).
    pub fn ask(&mut self, slot: Arc<Slot>, now: Instant) {
        if !self.listed.iter().any(|l| Arc::ptr_eq(&l.slot, &slot)) {
            // A request that chose from a catalog since replaced: its version's files
            // changed. Its requests are told to come back; the next finds the new one.
            slot.set_failed(replaced(), now + Duration::from_secs(1));
            return;
        }
        let known = |s: &Arc<Slot>| Arc::ptr_eq(s, &slot);
        if !self.queue.iter().any(known) && !self.running.iter().any(known) {
            self.queue.push_back(slot);
        }
    }

    /// The loads to start now: as many asked-for versions as `max_concurrent_loads`
    /// allows, each once its bytes fit (evicting for them). One that can never fit is
    /// refused; one that must wait for room is marked so and tried again at the next call.
    pub fn start(&mut self, now: Instant) -> Vec<LoadJob> {
        let mut started = Vec::new();
        let mut waiting = VecDeque::new();
        while self.running.len() < self.cfg.max_concurrent_loads {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            let Some((name, path)) = self
                .listed
                .iter()
                .find(|l| Arc::ptr_eq(&l.slot, &slot))
                .map(|l| (l.name.clone(), l.path.clone()))
            else {
                continue;
            };
            let need = slot.bytes();
            let budget = self.cfg.budget;
            if budget > 0 && need > budget {
                slot.set_no_room(
                    format!(
                        "it takes {need} bytes, more than repository.memory_budget_bytes \
                         ({budget})"
                    ),
                    now + self.cfg.retry,
                );
                continue;
            }
            if !self.make_room(need, now) {
                slot.set_loading(true);
                waiting.push_back(slot);
                continue;
            }
            slot.set_loading(false);
            started.push(LoadJob {
                slot: Arc::clone(&slot),
                name,
                path,
            });
            self.running.push(slot);
        }
        // Those waiting for room keep their place, ahead of later asks.
        while let Some(slot) = waiting.pop_back() {
            self.queue.push_front(slot);
        }
        started
    }

    /// Whether a load waits for room (the thread then calls [`Demand::start`] again soon:
    /// nothing else tells it that a request let go of a version).
    pub fn waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// A load ended: `Ok((model, bytes kept))` serves from now on; an error is refused for
    /// the retry time, doubled for each failure in a row.
    pub fn finished(&mut self, slot: &Arc<Slot>, outcome: LoadOutcome, now: Instant) {
        self.running.retain(|s| !Arc::ptr_eq(s, slot));
        let listed = self.listed.iter_mut().find(|l| Arc::ptr_eq(&l.slot, slot));
        match outcome {
            Ok((model, bytes)) => {
                self.totals.loads += 1;
                if let Some(listed) = listed {
                    listed.failures = 0;
                }
                slot.set_ready(model, bytes);
                // Measured bigger than expected: make the room now.
                if self.cfg.budget > 0 && self.resident_bytes() > self.cfg.budget {
                    self.make_room(0, now);
                }
            }
            Err(reason) => {
                self.totals.load_failures += 1;
                let failures = listed.map_or(1, |l| {
                    l.failures += 1;
                    l.failures
                });
                let wait = self
                    .cfg
                    .retry
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(MAX_RETRY);
                slot.set_failed(reason, now + wait);
            }
        }
        self.publish();
    }

    /// Unloads what has been idle past its `idle_unload_s`, and lets popularity fade.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.last_halving + USES_HALF_LIFE {
            self.last_halving = now;
            for l in &self.listed {
                l.slot.halve_uses();
            }
        }
        let idle: Vec<Arc<Slot>> = self
            .listed
            .iter()
            .filter(|l| {
                let s = &l.slot;
                s.is_ready()
                    && !s.pinned()
                    && !s.in_use()
                    && s.idle_unload()
                        .is_some_and(|idle| now >= s.last_used() + idle)
            })
            .map(|l| Arc::clone(&l.slot))
            .collect();
        for slot in idle {
            tracing::info!(
                model = %slot.info().name,
                version = %slot.info().version,
                "unloaded: idle for its idle_unload_s"
            );
            self.evict(&slot, Eviction::Idle);
        }
        if !self.listed.is_empty() {
            self.publish();
        }
    }

    /// Unloads `slot` now (the repository API): requests that hold it finish on it.
    pub fn unload(&mut self, slot: &Arc<Slot>) {
        self.evict(slot, Eviction::Unload);
        self.publish();
    }

    /// The listed versions in memory.
    fn loaded(&self) -> impl Iterator<Item = &Listed> {
        self.listed.iter().filter(|l| l.slot.is_ready())
    }

    /// What the listed versions in memory took at their loads.
    fn loaded_bytes(&self) -> u64 {
        self.loaded().map(|l| l.slot.bytes()).sum()
    }

    /// Bytes of the listed versions in memory, and of the loads running (as expected).
    fn resident_bytes(&self) -> u64 {
        let loading: u64 = self.running.iter().map(|s| s.bytes()).sum();
        self.loaded_bytes() + loading
    }

    /// Evicts until `need` more bytes fit in the budget; whether they do.
    fn make_room(&mut self, need: u64, now: Instant) -> bool {
        let budget = self.cfg.budget;
        if budget == 0 {
            return true;
        }
        loop {
            if self.resident_bytes() + need <= budget {
                return true;
            }
            let Some(victim) = self.victim(now) else {
                return false;
            };
            tracing::debug!(
                model = %victim.info().name,
                version = %victim.info().version,
                bytes = victim.bytes(),
                "unloaded to make room in repository.memory_budget_bytes"
            );
            self.evict(&victim, Eviction::Memory);
        }
    }

    /// The evictable version least worth keeping.
    fn victim(&self, now: Instant) -> Option<Arc<Slot>> {
        self.listed
            .iter()
            .map(|l| &l.slot)
            .filter(|s| {
                s.is_ready()
                    && !s.pinned()
                    && !s.in_use()
                    && s.loaded_at()
                        .is_some_and(|at| now >= at + self.cfg.min_resident)
            })
            .max_by(|a, b| keep_score(a, now).total_cmp(&keep_score(b, now)))
            .cloned()
    }

    fn evict(&mut self, slot: &Arc<Slot>, why: Eviction) {
        if slot.evict() {
            match why {
                Eviction::Memory => self.totals.evicted_for_memory += 1,
                Eviction::Idle => self.totals.evicted_idle += 1,
                Eviction::Unload => {}
            }
            metrics::counter!(MODEL_EVICTIONS_TOTAL, "reason" => why.as_str()).increment(1);
            let info = slot.info();
            metrics::gauge!(
                MODEL_MEMORY_BYTES,
                "model" => info.name.to_string(),
                "version" => info.version.to_string()
            )
            .set(0.0);
        }
    }

    /// The gauges: versions in memory and what each took.
    fn publish(&self) {
        let mut loaded = 0usize;
        for l in self.listed.iter().filter(|l| l.slot.is_ready()) {
            loaded += 1;
            let info = l.slot.info();
            metrics::gauge!(
                MODEL_MEMORY_BYTES,
                "model" => info.name.to_string(),
                "version" => info.version.to_string()
            )
            .set(l.slot.bytes() as f64);
        }
        metrics::gauge!(MODELS_LOADED).set(loaded as f64);
    }
}

/// Why a version asked for is not loaded: it is no longer the one listed.
fn replaced() -> String {
    "its files changed or it was unloaded while it was asked for; ask again".to_owned()
}

/// How little a loaded version is worth keeping: the higher, the sooner evicted.
fn keep_score(slot: &Slot, now: Instant) -> f64 {
    let idle = now
        .saturating_duration_since(slot.last_used())
        .as_secs_f64();
    // Idle a millisecond at least: among versions used this very moment, size decides.
    idle.max(0.001) * slot.bytes() as f64 / (1.0 + slot.uses() as f64)
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::infer::model::on_demand::{OnDemand, SlotOptions, State};
    use crate::infer::model::testing::unrun;

    const MB: u64 = 1 << 20;

    struct Rig {
        demand: Demand,
        slots: Vec<Arc<Slot>>,
        asks: mpsc::UnboundedReceiver<Arc<Slot>>,
    }

    /// `n` versions of `mb` MiB each, listed, with a budget of `budget_mb` MiB.
    fn rig(n: usize, mb: u64, budget_mb: u64, opts: SlotOptions) -> Rig {
        let (tx, asks) = mpsc::unbounded_channel();
        let slots: Vec<Arc<Slot>> = (0..n)
            .map(|i| {
                let model = unrun(&format!("m{i}"), "1");
                let opts = SlotOptions {
                    expected_bytes: mb * MB,
                    ..opts
                };
                Slot::new(model.info().clone(), opts, tx.clone())
            })
            .collect();
        let mut demand = Demand::new(
            DemandSettings {
                budget: budget_mb * MB,
                max_concurrent_loads: 2,
                min_resident: Duration::from_secs(10),
                retry: Duration::from_secs(2),
            },
            Instant::now(),
        );
        demand.list(
            slots
                .iter()
                .enumerate()
                .map(|(i, s)| (Arc::clone(s), format!("m{i}"), PathBuf::from("/x")))
                .collect(),
            Instant::now(),
        );
        Rig {
            demand,
            slots,
            asks,
        }
    }

    impl Rig {
        /// Asks for version `i` as a request would, and lets the thread take the ask.
        fn ask(&mut self, i: usize) {
            let handle = OnDemand::new(Arc::clone(&self.slots[i]));
            assert!(handle.try_resident().is_none(), "m{i} is not loaded yet");
            let asked = self.asks.try_recv().expect("an ask");
            self.demand.ask(asked, Instant::now());
        }

        /// Starts what can start and ends those loads well, each at `mb` MiB.
        fn load_all(&mut self, mb: u64) -> Vec<String> {
            let jobs = self.demand.start(Instant::now());
            let names = jobs.iter().map(|j| j.name.clone()).collect();
            for job in jobs {
                let model = unrun(&job.name, "1");
                self.demand
                    .finished(&job.slot, Ok((model, mb * MB)), Instant::now());
            }
            names
        }

        /// Asks for version 0 and fails its load: how long it is refused.
        fn fail_once(&mut self) -> Duration {
            self.ask(0);
            let job = self.demand.start(Instant::now()).pop().unwrap();
            self.demand
                .finished(&job.slot, Err("broken".into()), Instant::now());
            let State::Failed { retry_at, .. } = self.slots[0].state() else {
                panic!("failed")
            };
            retry_at - Instant::now()
        }

        fn ready(&self) -> Vec<usize> {
            (0..self.slots.len())
                .filter(|&i| self.slots[i].is_ready())
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn loads_start_two_at_a_time_and_each_ask_is_one_load() {
        let mut r = rig(4, 1, 0, SlotOptions::default());
        for i in 0..4 {
            r.ask(i);
        }
        // A second ask of a version already asked for is not a second load.
        r.demand.ask(Arc::clone(&r.slots[0]), Instant::now());
        let first = r.demand.start(Instant::now());
        assert_eq!(first.len(), 2, "max_concurrent_loads");
        assert!(r.demand.start(Instant::now()).is_empty());
        for job in first {
            r.demand
                .finished(&job.slot, Ok((unrun(&job.name, "1"), MB)), Instant::now());
        }
        assert_eq!(r.load_all(1), vec!["m2", "m3"]);
        assert_eq!(r.ready(), vec![0, 1, 2, 3]);
        assert_eq!(r.demand.stats().totals.loads, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn room_is_made_by_evicting_the_idle_and_big_first_never_the_young_used_or_pinned() {
        let mut r = rig(5, 10, 30, SlotOptions::default());
        for i in 0..3 {
            r.ask(i);
        }
        r.load_all(10);
        r.load_all(10);
        assert_eq!(r.ready(), vec![0, 1, 2]);
        // Within min_resident nothing is evicted: the fourth waits for room.
        r.ask(3);
        assert!(r.load_all(10).is_empty());
        assert!(matches!(
            r.slots[3].state(),
            State::Loading {
                waiting_for_room: true
            }
        ));
        assert!(r.demand.waiting());
        tokio::time::advance(Duration::from_secs(11)).await;
        // m0 is busy (a request holds it), m1 was asked for lately: m2 goes.
        let held = OnDemand::new(Arc::clone(&r.slots[0]))
            .try_resident()
            .unwrap();
        for _ in 0..5 {
            OnDemand::new(Arc::clone(&r.slots[1]))
                .try_resident()
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        OnDemand::new(Arc::clone(&r.slots[1]))
            .try_resident()
            .unwrap();
        assert_eq!(r.load_all(10), vec!["m3"]);
        assert_eq!(r.ready(), vec![0, 1, 3]);
        assert_eq!(r.demand.stats().totals.evicted_for_memory, 1);
        drop(held);
        // A pinned version is never evicted: with m0, m1 pinned and m3 young, m4 waits.
        r.slots[0].set_pinned(true);
        r.slots[1].set_pinned(true);
        r.ask(4);
        assert!(r.load_all(10).is_empty());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(r.load_all(10), vec!["m4"]);
        assert_eq!(r.ready(), vec![0, 1, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_bigger_than_the_budget_is_refused_and_a_failed_load_waits_longer_each_time()
    {
        let mut r = rig(2, 50, 30, SlotOptions::default());
        r.ask(0);
        assert!(r.load_all(50).is_empty());
        assert!(matches!(r.slots[0].state(), State::NoRoom { .. }));

        let mut r = rig(1, 1, 0, SlotOptions::default());
        let mut waits = Vec::new();
        for _ in 0..3 {
            let wait = r.fail_once();
            waits.push(wait.as_secs());
            // Refused at once until then: no ask reaches the thread.
            let handle = OnDemand::new(Arc::clone(&r.slots[0]));
            assert!(handle.try_resident().is_none());
            assert!(r.asks.try_recv().is_err());
            tokio::time::advance(wait).await;
        }
        assert_eq!(waits, vec![2, 4, 8]);
        // A load that works ends the row.
        r.ask(0);
        r.load_all(1);
        r.slots[0].evict();
        assert_eq!(r.fail_once().as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_version_is_unloaded_after_its_idle_time_unless_pinned_or_held() {
        let opts = SlotOptions {
            idle_unload: Some(Duration::from_secs(30)),
            ..SlotOptions::default()
        };
        let mut r = rig(3, 1, 0, opts);
        for i in 0..3 {
            r.ask(i);
        }
        r.load_all(1);
        r.load_all(1);
        r.slots[1].set_pinned(true);
        let held = OnDemand::new(Arc::clone(&r.slots[2]))
            .try_resident()
            .unwrap();
        tokio::time::advance(Duration::from_secs(29)).await;
        r.demand.tick(Instant::now());
        assert_eq!(r.ready(), vec![0, 1, 2]);
        tokio::time::advance(Duration::from_secs(2)).await;
        r.demand.tick(Instant::now());
        assert_eq!(r.ready(), vec![1, 2], "m2 is held by a request");
        drop(held);
        r.demand.tick(Instant::now());
        assert_eq!(r.ready(), vec![1]);
        assert_eq!(r.demand.stats().totals.evicted_idle, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_no_longer_listed_is_unloaded_and_its_waiting_or_late_asks_refused() {
        let mut r = rig(2, 1, 0, SlotOptions::default());
        r.ask(0);
        r.load_all(1);
        // m1 asked for, and not started yet.
        r.ask(1);
        r.demand.list(Vec::new(), Instant::now());
        assert!(!r.slots[0].is_ready(), "unlisted: unloaded");
        assert!(
            matches!(r.slots[1].state(), State::Failed { .. }),
            "its waiters are told, not left loading"
        );
        r.ask(0);
        assert!(matches!(r.slots[0].state(), State::Failed { .. }));
        assert!(r.demand.start(Instant::now()).is_empty());
    }
}
