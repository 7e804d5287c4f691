//! The accept loop every backend runs on each I/O thread: accept, the connection caps (all,
//! and per address), one
//! local task per connection, and at the drain: stop accepting (closing this thread's
//! listener), then wait for this thread's connections to finish.
//!
//! A backend supplies only a [`Listener`]: how a connection is accepted and what byte
//! stream it becomes. TLS, HTTP, timeouts and the drain live in `conn` for all of them.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore};

use crate::metrics::{CONNECTIONS_REJECTED_PER_IP_TOTAL, CONNECTIONS_REJECTED_TOTAL};
use crate::server::conn::{self, ConnSettings, Peer};

/// A listening socket of one backend, on one I/O thread.
pub trait Listener {
    /// An accepted connection's byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;

    /// The next connection, [`tune`]d. Dropping the future before it resolves loses no
    /// connection: it stays queued on the socket.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>>;
}

/// Longest a connection's sent data may stay unacknowledged (a peer that stops reading
/// an answer) before the kernel closes it: nginx's `send_timeout` default.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Sets an accepted socket's options: `TCP_NODELAY` (answers leave at once) and
/// `TCP_USER_TIMEOUT` = [`SEND_TIMEOUT`], which bounds how long an answer can wait on a
/// peer that stopped reading it (no timeout of hyper's runs while a request is in flight).
/// Best effort: a socket that refuses an option is served as it is.
pub fn tune(socket: &impl AsFd) {
    let socket = SockRef::from(socket);
    let _ = socket.set_tcp_nodelay(true);
    let _ = socket.set_tcp_user_timeout(Some(SEND_TIMEOUT));
}

/// Accepts on `listener` until the drain begins, then closes it and returns once every
/// connection this thread accepted has closed (the control thread enforces the drain
/// deadline). Must run inside a `LocalSet`.
pub async fn serve<L: Listener>(
    listener: L,
    settings: Arc<ConnSettings>,
    permits: Arc<Semaphore>,
) -> io::Result<()> {
    let open = Rc::new(OpenConnections::default());
    let mut drain = settings.gateway.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = drain.wait_for(|d| *d) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // At the connection cap: close at once rather than queue in the backlog.
                    metrics::counter!(CONNECTIONS_REJECTED_TOTAL).increment(1);
                    drop(stream);
                    continue;
                };
                let Some(peer_permit) = settings.peer_cap.admit(peer.ip()) else {
                    // This address holds all the connections it may.
                    metrics::counter!(CONNECTIONS_REJECTED_PER_IP_TOTAL).increment(1);
                    drop(stream);
                    continue;
                };
                let settings = Arc::clone(&settings);
                let guard = OpenConnections::open(&open);
                tokio::task::spawn_local(async move {
                    conn::serve(stream, Peer::Tcp(peer), settings).await;
                    drop(peer_permit);
                    drop(permit);
                    drop(guard);
                });
            }
            Err(e) => {
                // Usually EMFILE/ENFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Closed now, so the kernel stops queueing connections for this thread: with
    // SO_REUSEPORT the group's other sockets (another instance's) take them.
    drop(listener);
    open.all_closed().await;
    Ok(())
}

/// This thread's open connections.
#[derive(Default)]
struct OpenConnections {
    count: Cell<usize>,
    closed: Notify,
}

impl OpenConnections {
    fn open(this: &Rc<Self>) -> OpenGuard {
        this.count.set(this.count.get() + 1);
        OpenGuard(Rc::clone(this))
    }

    async fn all_closed(&self) {
        while self.count.get() > 0 {
            self.closed.notified().await;
        }
    }
}

/// One open connection; dropping it (the connection's task ends) counts it closed.
struct OpenGuard(Rc<OpenConnections>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let open = &self.0;
        open.count.set(open.count.get().saturating_sub(1));
        if open.count.get() == 0 {
            open.closed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn all_closed_waits_for_the_last_guard() {
        let open = Rc::new(OpenConnections::default());
        let a = OpenConnections::open(&open);
        let b = OpenConnections::open(&open);
        drop(a);
        let waiting = open.all_closed();
        tokio::pin!(waiting);
        assert!(waiting.as_mut().now_or_never().is_none());
        drop(b);
        waiting.await;
        // With nothing open it resolves at once.
        open.all_closed().await;
    }
}
