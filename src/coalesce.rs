//! Request coalescing: single flight per cache key. The first request for a key computes;
//! identical requests arriving meanwhile wait for its outcome instead of computing again.
//!
//! A leader that finishes hands followers its value or its error, unless the error is its
//! own (its deadline passed: [`Shareable`]). A leader that is dropped before finishing
//! (client gone, deadline, panic unwinding through it) or fails on its own marks the flight
//! abandoned, and each follower tries again — one of them becomes the new leader, with its
//! own deadline — so no follower waits on a leader that will never answer, nor gets a 504
//! for a deadline that was not its. Callers bound their whole wait with their own deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// State of one flight, as followers see it.
#[derive(Debug, Clone)]
enum Slot<T, E> {
    Pending,
    Done(T),
    Failed(E),
    Abandoned,
}

type Flights<T, E> = Mutex<HashMap<u128, watch::Sender<Slot<T, E>>>>;

/// Whether a leader's error is the followers' too.
pub trait Shareable {
    /// `false` for an error that belongs to the leader's request alone.
    fn shareable(&self) -> bool;
}

/// Who computed the value a caller got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This caller computed it.
    Leader,
    /// Another caller computed it; this one waited.
    Follower,
}

/// Single-flight table, shared by every I/O thread.
pub struct Coalescer<T, E> {
    flights: Arc<Flights<T, E>>,
}

impl<T: Clone, E: Clone + Shareable> Default for Coalescer<T, E> {
    fn default() -> Self {
        Self {
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T: Clone, E: Clone + Shareable> Coalescer<T, E> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flights in progress.
    pub fn in_flight(&self) -> usize {
        lock(&self.flights).len()
    }

    /// Runs `compute` for `key` unless an identical flight is already running, in which
    /// case this waits for and shares its outcome. `compute` may be called again if the
    /// leader this caller followed was abandoned.
    pub async fn run<F, Fut>(&self, key: u128, mut compute: F) -> (Result<T, E>, Role)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        loop {
            match self.join(key) {
                Joined::Leader(guard) => {
                    let outcome = compute().await;
                    guard.finish(&outcome);
                    return (outcome, Role::Leader);
                }
                Joined::Follower(mut rx) => {
                    let slot = rx
                        .wait_for(|s| !matches!(s, Slot::Pending))
                        .await
                        .map(|s| s.clone())
                        // The sender is only dropped after publishing; treat it as abandoned.
                        .unwrap_or(Slot::Abandoned);
                    match slot {
                        Slot::Done(v) => return (Ok(v), Role::Follower),
                        Slot::Failed(e) => return (Err(e), Role::Follower),
                        Slot::Abandoned | Slot::Pending => continue,
                    }
                }
            }
        }
    }

    fn join(&self, key: u128) -> Joined<T, E> {
        let mut flights = lock(&self.flights);
        if let Some(tx) = flights.get(&key) {
            return Joined::Follower(tx.subscribe());
        }
        let (tx, _) = watch::channel(Slot::Pending);
        flights.insert(key, tx);
        Joined::Leader(LeaderGuard {
            key,
            flights: Arc::clone(&self.flights),
            finished: false,
        })
    }
}

fn lock<T, E>(
    flights: &Flights<T, E>,
) -> std::sync::MutexGuard<'_, HashMap<u128, watch::Sender<Slot<T, E>>>> {
    // The map stays consistent under any panic (single inserts/removes), so poison is moot.
    flights.lock().unwrap_or_else(|p| p.into_inner())
}

enum Joined<T, E> {
    Leader(LeaderGuard<T, E>),
    Follower(watch::Receiver<Slot<T, E>>),
}

/// Held by the leader; publishing or dropping it ends the flight.
struct LeaderGuard<T, E> {
    key: u128,
    flights: Arc<Flights<T, E>>,
    finished: bool,
}

impl<T: Clone, E: Clone + Shareable> LeaderGuard<T, E> {
    fn finish(mut self, outcome: &Result<T, E>) {
        let slot = match outcome {
            Ok(v) => Slot::Done(v.clone()),
            Err(e) if e.shareable() => Slot::Failed(e.clone()),
            Err(_) => Slot::Abandoned,
        };
        self.publish(slot);
        self.finished = true;
    }

    fn publish(&self, slot: Slot<T, E>) {
        // Remove first: a request arriving after this point starts a new flight (and may
        // then hit the cache the leader just filled).
        if let Some(tx) = lock(&self.flights).remove(&self.key) {
            tx.send_replace(slot);
        }
    }
}

impl<T, E> Drop for LeaderGuard<T, E> {
    fn drop(&mut self) {
        if !self.finished
            && let Some(tx) = self
                .flights
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.key)
        {
            tx.send_replace(Slot::Abandoned);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// In these tests an error starting with "own" is the leader's alone.
    impl Shareable for String {
        fn shareable(&self) -> bool {
            !self.starts_with("own")
        }
    }

    /// A leader for key 1 that fails with `error` after 10 ms.
    fn lead_then_fail(
        c: &Arc<Coalescer<u32, String>>,
        error: &'static str,
    ) -> tokio::task::JoinHandle<(Result<u32, String>, Role)> {
        let c = Arc::clone(c);
        tokio::spawn(async move {
            c.run(1, || async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                Err(error.to_owned())
            })
            .await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn identical_concurrent_calls_compute_once() {
        let c = Arc::new(Coalescer::<u32, String>::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (c, calls) = (Arc::clone(&c), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                c.run(7, || {
                    let calls = Arc::clone(&calls);
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok(42)
                    }
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, role) = t.await.unwrap();
            assert_eq!(v, Ok(42));
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!((calls.load(Ordering::SeqCst), leaders), (1, 1));
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn followers_share_the_leaders_error() {
        let c = Arc::new(Coalescer::<u32, String>::new());
        let leader = lead_then_fail(&c, "model failed");
        tokio::task::yield_now().await;
        let follower = c.run(1, || async { Ok(1) }).await;
        assert_eq!(follower, (Err("model failed".to_owned()), Role::Follower));
        assert_eq!(leader.await.unwrap().1, Role::Leader);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leaders_own_error_hands_the_flight_over() {
        let c = Arc::new(Coalescer::<u32, String>::new());
        let leader = lead_then_fail(&c, "own deadline passed");
        tokio::task::yield_now().await;
        let follower = c.run(1, || async { Ok(3) }).await;
        assert_eq!(
            follower,
            (Ok(3), Role::Leader),
            "computed with its own time"
        );
        assert_eq!(
            leader.await.unwrap(),
            (Err("own deadline passed".to_owned()), Role::Leader)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_leader_hands_over_to_a_follower() {
        let c = Arc::new(Coalescer::<u32, String>::new());
        let leader = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.run(1, std::future::pending::<Result<u32, String>>).await }
        });
        tokio::task::yield_now().await;
        let follower = tokio::spawn({
            let c = Arc::clone(&c);
            async move { c.run(1, || async { Ok(5) }).await }
        });
        tokio::task::yield_now().await;
        leader.abort(); // the client went away mid-inference
        let got = tokio::time::timeout(Duration::from_secs(1), follower).await;
        assert_eq!(
            got.unwrap().unwrap(),
            (Ok(5), Role::Leader),
            "the follower took over"
        );
        assert_eq!(c.in_flight(), 0);
    }
}
