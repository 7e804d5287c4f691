//! Graceful shutdown: one drain signal for every I/O thread, and a count of open connections.
//!
//! The first SIGTERM/SIGINT (or the idle exit) flips [`Shutdown::begin_drain`]: `/ready`
//! answers 503, public listeners stop accepting, every connection is asked to finish its
//! in-flight requests and close (HTTP/2 by GOAWAY; HTTP/1.1 by `Connection: close` on its
//! next answer, or after `shutdown.linger_ms` of silence). The check socket keeps serving.
//! The control thread then waits for [`Shutdown::wait_closed`] up to the drain deadline.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

use crate::metrics::CONNECTIONS_ACTIVE;

/// Shared by every thread; cheap to clone through an `Arc`.
#[derive(Debug)]
pub struct Shutdown {
    draining: AtomicBool,
    drain_tx: watch::Sender<bool>,
    open: AtomicUsize,
    closed: Notify,
}

impl Shutdown {
    /// A shutdown handle with no drain started and no connection open.
    pub fn new() -> Arc<Self> {
        let (drain_tx, _) = watch::channel(false);
        Arc::new(Self {
            draining: AtomicBool::new(false),
            drain_tx,
            open: AtomicUsize::new(0),
            closed: Notify::new(),
        })
    }

    /// Starts the drain; later calls do nothing. Returns whether this call started it.
    pub fn begin_drain(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        if first {
            self.drain_tx.send_replace(true);
        }
        first
    }

    /// Whether a drain has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// A receiver whose value turns `true` when the drain starts.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.drain_tx.subscribe()
    }

    /// Resolves once the drain has started (at once if it has).
    pub fn drain_started(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut drain = self.subscribe();
        async move {
            let _ = drain.wait_for(|d| *d).await;
        }
    }

    /// Registers an open connection; the guard unregisters it when dropped.
    pub fn track_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!(CONNECTIONS_ACTIVE).increment(1.0);
        ConnectionGuard {
            shutdown: Arc::clone(self),
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Resolves once no connection is open.
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open_connections() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Keeps one connection counted as open; dropping it closes the count.
#[derive(Debug)]
pub struct ConnectionGuard {
    shutdown: Arc<Shutdown>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_ACTIVE).decrement(1.0);
        if self.shutdown.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shutdown.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_closed_resolves_when_last_guard_drops() {
        let sd = Shutdown::new();
        let a = sd.track_connection();
        let b = sd.track_connection();
        assert_eq!(sd.open_connections(), 2);
        let waiter = {
            let sd = Arc::clone(&sd);
            tokio::spawn(async move { sd.wait_closed().await })
        };
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("waiter finishes")
            .expect("no panic");
    }

    #[tokio::test]
    async fn drain_starts_once_and_notifies_subscribers() {
        let sd = Shutdown::new();
        let mut rx = sd.subscribe();
        assert!(!sd.is_draining());
        assert!(sd.begin_drain());
        assert!(!sd.begin_drain());
        rx.changed().await.expect("sender alive");
        assert!(*rx.borrow());
        assert!(sd.is_draining());
    }
}
