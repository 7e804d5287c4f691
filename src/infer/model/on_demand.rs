//! A version loaded on demand: listed in the catalog from the start (its [`ModelInfo`] is
//! known), loaded by the first request that needs it, and evicted when memory runs short or
//! when nobody asked for it in a while.
//!
//! The catalog holds an [`OnDemand`] handle for each such version; the handle never changes
//! while the version's files do not, so a load or an eviction swaps no catalog. Its
//! [`Slot`] holds the state every request sees (a `watch`): the first request that finds it
//! unloaded asks the repository's thread for a load and every request waits on the same
//! state, so N concurrent first requests cost one load. The repository's thread owns every
//! transition but the ask (see `repository/demand.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::infer::manifest::ModelInfo;
use crate::infer::model::{Batch, Model, ModelError, Outputs};

/// Where a version loaded on demand stands.
#[derive(Clone)]
pub enum State {
    /// Not in memory; the next request asks for a load.
    Unloaded,
    /// A load was asked for and has not ended; `waiting_for_room` while it waits for
    /// versions in use (or too young) to become evictable.
    Loading { waiting_for_room: bool },
    /// In memory, serving.
    Ready(Arc<dyn Model>),
    /// The last load failed: requests are refused until `retry_at` (or until the files
    /// change, which makes a new slot).
    Failed { reason: String, retry_at: Instant },
    /// The version does not fit in the memory budget, whatever is evicted.
    NoRoom { reason: String, retry_at: Instant },
}

impl State {
    /// Triton's name for the state, as the repository index shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unloaded => "UNLOADED",
            Self::Loading { .. } => "LOADING",
            Self::Ready(_) => "READY",
            Self::Failed { .. } | Self::NoRoom { .. } => "UNAVAILABLE",
        }
    }
}

/// Why a version loaded on demand cannot answer now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotResident {
    /// Its last load failed; no new load before `retry_after`.
    #[error("model {name:?} failed to load: {reason}; retry after {retry_after:?}")]
    LoadFailed {
        name: String,
        reason: String,
        retry_after: Duration,
    },
    /// The memory budget has no room for it (now, or ever).
    #[error("model {name:?} does not fit in memory now: {reason}")]
    InsufficientMemory {
        name: String,
        reason: String,
        retry_after: Duration,
    },
    /// The deadline passed while it was loading.
    #[error("the deadline passed while the model was loading")]
    Deadline,
    /// The repository's thread is gone (the process is stopping).
    #[error("the repository's thread has stopped")]
    Stopped,
}

/// A version in memory for a request, and how long the request waited for its load.
pub struct Resident {
    /// The loaded model: the request holds it until it is answered, so an eviction meanwhile
    /// frees nothing it uses.
    pub model: Arc<dyn Model>,
    /// Time waited for the load; `None` when it was loaded already.
    pub load: Option<Duration>,
}

/// What the repository says of a version loaded on demand.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotOptions {
    /// Never evicted once loaded (its `model.toml`, or the repository API's load).
    pub pinned: bool,
    /// Unloaded after this long without a request.
    pub idle_unload: Option<Duration>,
    /// What it is expected to take before its first load (its files' size), bytes.
    pub expected_bytes: u64,
}

/// One version loaded on demand, shared by its catalog handle and the repository's thread.
pub struct Slot {
    info: ModelInfo,
    state: watch::Sender<State>,
    asks: mpsc::UnboundedSender<Arc<Slot>>,
    pinned: AtomicBool,
    idle_unload: Mutex<Option<Duration>>,
    /// Measured at its last load; before that, its files' size.
    bytes: AtomicU64,
    /// Requests since the repository last halved the count (recent use, for eviction).
    uses: AtomicU64,
    last_used: Mutex<Instant>,
    loaded_at: Mutex<Option<Instant>>,
}

impl Slot {
    /// An unloaded version described by `info`; its loads are asked for on `asks`.
    pub fn new(
        info: ModelInfo,
        opts: SlotOptions,
        asks: mpsc::UnboundedSender<Arc<Slot>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            info,
            state: watch::Sender::new(State::Unloaded),
            asks,
            pinned: AtomicBool::new(opts.pinned),
            idle_unload: Mutex::new(opts.idle_unload),
            bytes: AtomicU64::new(opts.expected_bytes),
            uses: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            loaded_at: Mutex::new(None),
        })
    }

    /// What the version is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Whether it is in memory.
    pub fn is_ready(&self) -> bool {
        matches!(*self.state.borrow(), State::Ready(_))
    }

    /// Whether a request holds its loaded model (answering, queued or batched).
    pub fn in_use(&self) -> bool {
        match &*self.state.borrow() {
            State::Ready(model) => Arc::strong_count(model) > 1,
            _ => false,
        }
    }

    /// Never evicted once loaded.
    pub fn pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed)
    }

    /// Pins or unpins it.
    pub fn set_pinned(&self, pinned: bool) {
        self.pinned.store(pinned, Ordering::Relaxed);
    }

    /// Unloaded after this long without a request.
    pub fn idle_unload(&self) -> Option<Duration> {
        *self
            .idle_unload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets how long it may stay idle (its `model.toml` changed).
    pub fn set_idle_unload(&self, idle: Option<Duration>) {
        *self
            .idle_unload
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = idle;
    }

    /// Bytes it took at its last load, or its files' size before the first.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Requests lately (halved now and then by [`Slot::halve_uses`]).
    pub fn uses(&self) -> u64 {
        self.uses.load(Ordering::Relaxed)
    }

    /// Halves the recent-use count: old popularity fades.
    pub fn halve_uses(&self) {
        let _ = self
            .uses
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u / 2));
    }

    /// When a request last asked for it.
    pub fn last_used(&self) -> Instant {
        *self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// When its current load ended (`None` while not loaded).
    pub fn loaded_at(&self) -> Option<Instant> {
        *self
            .loaded_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        self.uses.fetch_add(1, Ordering::Relaxed);
        *self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// The load is waiting for room (`true`) or running (`false`). Waiters are woken only
    /// by a change: a load waiting for room is marked so again at every retry.
    pub fn set_loading(&self, waiting_for_room: bool) {
        self.state.send_if_modified(|state| {
            let same =
                matches!(state, State::Loading { waiting_for_room: w } if *w == waiting_for_room);
            if !same {
                *state = State::Loading { waiting_for_room };
            }
            !same
        });
    }

    /// The load ended with `model`, which took `bytes`.
    pub fn set_ready(&self, model: Arc<dyn Model>, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
        *self
            .loaded_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.state.send_replace(State::Ready(model));
    }

    /// The load failed: refused until `retry_at`.
    pub fn set_failed(&self, reason: String, retry_at: Instant) {
        self.state.send_replace(State::Failed { reason, retry_at });
    }

    /// It cannot fit: refused until `retry_at`.
    pub fn set_no_room(&self, reason: String, retry_at: Instant) {
        self.state.send_replace(State::NoRoom { reason, retry_at });
    }

    /// Unloads it; requests that hold the model finish on it. Whether it was loaded.
    pub fn evict(&self) -> bool {
        *self
            .loaded_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let old = self.state.send_replace(State::Unloaded);
        matches!(old, State::Ready(_))
    }

    /// Asks for a load unless one is under way or a refusal still holds; whether it asked.
    fn ask_now(self: &Arc<Self>) -> Result<bool, NotResident> {
        let now = Instant::now();
        let mut ask = false;
        self.state.send_if_modified(|state| {
            ask = match state {
                State::Unloaded => true,
                State::Failed { retry_at, .. } | State::NoRoom { retry_at, .. } => now >= *retry_at,
                State::Loading { .. } | State::Ready(_) => false,
            };
            if ask {
                *state = State::Loading {
                    waiting_for_room: false,
                };
            }
            ask
        });
        if ask && self.asks.send(Arc::clone(self)).is_err() {
            self.state.send_replace(State::Unloaded);
            return Err(NotResident::Stopped);
        }
        Ok(ask)
    }

    /// What a state that is not `Loading` means to a request now: the model, a refusal,
    /// or `None` to ask again (evicted, or a refusal that has run out).
    fn settled(&self, state: &State) -> Option<Result<Arc<dyn Model>, NotResident>> {
        let now = Instant::now();
        let name = self.info.name.to_string();
        match state {
            State::Ready(model) => Some(Ok(Arc::clone(model))),
            State::Failed { reason, retry_at } if *retry_at > now => {
                Some(Err(NotResident::LoadFailed {
                    name,
                    reason: reason.clone(),
                    retry_after: *retry_at - now,
                }))
            }
            State::NoRoom { reason, retry_at } if *retry_at > now => {
                Some(Err(NotResident::InsufficientMemory {
                    name,
                    reason: reason.clone(),
                    retry_after: *retry_at - now,
                }))
            }
            _ => None,
        }
    }
}

/// The catalog's handle to a version loaded on demand: a [`Model`] whose `info` is known
/// without loading; requests make it resident ([`OnDemand::resident`]) before they run it.
pub struct OnDemand {
    slot: Arc<Slot>,
}

impl OnDemand {
    /// The handle of `slot`.
    pub fn new(slot: Arc<Slot>) -> Self {
        Self { slot }
    }

    /// Its slot.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    /// The loaded model, loading it first if need be (one load for every request that
    /// waits), within `until`. A refusal that still holds (a failed load's backoff, no
    /// room) is answered at once, without a new load.
    pub async fn resident(&self, until: Instant) -> Result<Resident, NotResident> {
        let slot = &self.slot;
        slot.touch();
        let started = Instant::now();
        let mut rx = slot.state.subscribe();
        let mut waited = false;
        loop {
            let asked = slot.ask_now()?;
            // Whoever asked, a request that finds it not in memory waits for its load.
            waited |= asked || !slot.is_ready();
            let state = {
                let wait = rx.wait_for(|s| !matches!(s, State::Loading { .. }));
                match tokio::time::timeout_at(until, wait).await {
                    Ok(Ok(state)) => state.clone(),
                    Ok(Err(_)) => return Err(NotResident::Stopped),
                    Err(_) => return Err(self.timed_out()),
                }
            };
            match slot.settled(&state) {
                Some(Ok(model)) => {
                    return Ok(Resident {
                        model,
                        load: waited.then(|| started.elapsed()),
                    });
                }
                Some(Err(refused)) => return Err(refused),
                // Evicted meanwhile, or a refusal that just ran out: ask again.
                None => waited = true,
            }
        }
    }

    /// Why a wait that ran out of time ended: no room (still waiting for it), else the
    /// deadline.
    fn timed_out(&self) -> NotResident {
        match self.slot.state() {
            State::Loading {
                waiting_for_room: true,
            } => NotResident::InsufficientMemory {
                name: self.slot.info.name.to_string(),
                reason: "every loaded version that could make room is in use or was loaded \
                         too recently"
                    .to_owned(),
                retry_after: Duration::from_secs(1),
            },
            _ => NotResident::Deadline,
        }
    }

    /// The loaded model if it is in memory now; otherwise asks for a load (unless a
    /// refusal holds) and answers `None` at once. For work that must not wait: a shadow.
    pub fn try_resident(&self) -> Option<Arc<dyn Model>> {
        if let State::Ready(model) = &*self.slot.state.borrow() {
            self.slot.touch();
            return Some(Arc::clone(model));
        }
        let _ = self.slot.ask_now();
        None
    }
}

impl Model for OnDemand {
    fn info(&self) -> &ModelInfo {
        &self.slot.info
    }

    /// Runs the loaded model; callers make it resident first and run that instead, so
    /// this is for a caller that did not (it refuses while unloaded).
    fn forward(&self, batch: &Batch) -> Result<Outputs, ModelError> {
        match self.slot.state() {
            State::Ready(model) => model.forward(batch),
            other => Err(ModelError::Load(format!(
                "loaded on demand and {} now",
                other.name()
            ))),
        }
    }

    fn on_demand(&self) -> Option<&OnDemand> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::model::testing::unrun;

    fn slot() -> (Arc<Slot>, mpsc::UnboundedReceiver<Arc<Slot>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let info = unrun("m", "1").info().clone();
        (Slot::new(info, SlotOptions::default(), tx), rx)
    }

    #[tokio::test(start_paused = true)]
    async fn a_hundred_waiting_requests_ask_for_one_load_and_all_get_the_model() {
        let (slot, mut asks) = slot();
        let until = Instant::now() + Duration::from_secs(10);
        let waiting: Vec<_> = (0..100)
            .map(|_| {
                let handle = OnDemand::new(Arc::clone(&slot));
                tokio::spawn(async move { handle.resident(until).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let asked = asks.try_recv().expect("one ask");
        assert!(asks.try_recv().is_err(), "one ask for a hundred requests");
        assert!(matches!(slot.state(), State::Loading { .. }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        asked.set_ready(unrun("m", "1"), 1000);
        for w in waiting {
            let resident = w.await.unwrap().unwrap();
            assert_eq!(resident.load, Some(Duration::from_millis(25)));
            assert_eq!(&*resident.model.info().name, "m");
        }
        // Loaded: no wait, no ask.
        let resident = OnDemand::new(Arc::clone(&slot))
            .resident(until)
            .await
            .unwrap();
        assert!(resident.load.is_none());
        assert!(asks.try_recv().is_err());
        assert_eq!(slot.uses(), 101);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_answered_at_once_and_a_wait_past_the_deadline_says_why() {
        let (slot, mut asks) = slot();
        let handle = OnDemand::new(Arc::clone(&slot));
        let now = Instant::now();
        slot.set_failed("broken".into(), now + Duration::from_secs(4));
        match handle.resident(now + Duration::from_secs(10)).await {
            Err(NotResident::LoadFailed { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(4));
            }
            _ => panic!("refused"),
        }
        assert!(asks.try_recv().is_err(), "no load during the backoff");
        // Once it passes, the next request asks again, and waits; while waiting for room
        // past its deadline it is told so.
        tokio::time::advance(Duration::from_secs(4)).await;
        let waiting = {
            let handle = OnDemand::new(Arc::clone(&slot));
            let until = Instant::now() + Duration::from_secs(1);
            tokio::spawn(async move { handle.resident(until).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(asks.try_recv().is_ok());
        slot.set_loading(true);
        assert!(matches!(
            waiting.await.unwrap(),
            Err(NotResident::InsufficientMemory { .. })
        ));
        slot.set_loading(false);
        let until = Instant::now() + Duration::from_secs(1);
        assert!(matches!(
            handle.resident(until).await,
            Err(NotResident::Deadline)
        ));
        // A loaded model's work through the handle itself runs the loaded model.
        assert!(handle.forward(&Batch::warm_up(handle.info())).is_err());
        assert!(!slot.in_use());
        slot.set_ready(unrun("m", "1"), 1);
        let held = handle.try_resident().unwrap();
        assert!(slot.in_use(), "a request holds it");
        drop(held);
        assert!(!slot.in_use());
        assert!(slot.evict());
        assert_eq!(slot.state().name(), "UNLOADED");
    }
}
