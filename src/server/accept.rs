//! The one accept loop: every backend's I/O threads, the check socket and the redirect
//! listener run it. Accept, the connection caps (all, and per address), one local task per
//! connection, and at the stop: close the listener, then (for the public listener) wait
//! for this thread's connections to finish.
//!
//! A listener supplies only a [`Listener`]: how a connection is accepted and what byte
//! stream it becomes; the caller says what serves a connection. TLS, HTTP, timeouts and
//! the drain live in `conn` for the public listener and the check socket.
//!
//! At the open-file limit (`EMFILE`) a connection waits in the backlog until a descriptor
//! is free: the loop asks this thread's idle keep-alive connections, those idle longest
//! first, to close (`idle::close_oldest_idle`), as nginx does, and retries at once; with
//! none to close it backs off. Failures are logged at most once a second, with a count
//! ([`AcceptErrors`]).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::metrics::{
    ACCEPT_ERRORS_TOTAL, CONNECTIONS_REJECTED_PER_IP_TOTAL, CONNECTIONS_REJECTED_TOTAL,
};
use crate::server::conn::{self, ConnSettings, Peer};
use crate::server::idle;
use crate::server::park::WaitReadable;
use crate::server::peer_cap::PeerCap;

/// A listening socket, on one thread.
pub trait Listener {
    /// An accepted connection's byte stream.
    type Stream: AsyncRead + AsyncWrite + WaitReadable + Unpin + 'static;

    /// The next connection, [`tune`]d where it is TCP. Dropping the future before it
    /// resolves loses no connection: it stays queued on the socket.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Peer)>>;
}

/// tokio's TCP listener (the epoll backend's, and the redirect listener's on any backend):
/// readiness through epoll, the accepted socket non-blocking.
impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, Peer)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        tune(&stream);
        Ok((stream, Peer::Tcp(peer)))
    }
}

/// tokio's Unix-domain listener (the check socket's).
impl Listener for UnixListener {
    type Stream = UnixStream;

    async fn accept(&self) -> io::Result<(UnixStream, Peer)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, Peer::Unix))
    }
}

/// How many connections a listener keeps open; one over a cap is closed at accept rather
/// than queued in the backlog.
#[derive(Debug, Clone)]
pub struct Caps {
    /// Connections open at once, over all the listener's threads.
    pub all: Arc<Semaphore>,
    /// Connections per client address (the public listener's).
    pub per_peer: Option<Arc<PeerCap>>,
    /// Whether refusals count in `infergate_connections_rejected*` (the public listener's).
    pub counted: bool,
}

impl Caps {
    /// A listener's own cap of `max` connections, uncounted, with none per address (the
    /// check socket's and the redirect listener's).
    pub fn own(max: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max)),
            per_peer: None,
            counted: false,
        }
    }
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

/// Accepts on `listener` until `stop` resolves, serving each connection as a local task
/// made by `serve_conn`; then closes the listener and returns this thread's open
/// connections, for a caller that waits for them ([`Open::all_closed`]). Must run inside a
/// `LocalSet`.
pub async fn serve<L, F, Fut>(
    listener: L,
    caps: Caps,
    stop: impl Future<Output = ()>,
    serve_conn: F,
) -> Open
where
    L: Listener,
    F: Fn(L::Stream, Peer) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let open = Open::default();
    let mut errors = AcceptErrors::default();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&caps.all).try_acquire_owned() else {
                    if caps.counted {
                        metrics::counter!(CONNECTIONS_REJECTED_TOTAL).increment(1);
                    }
                    drop(stream);
                    continue;
                };
                let peer_permit = match (&caps.per_peer, peer) {
                    (Some(cap), Peer::Tcp(addr)) => match cap.admit(addr.ip()) {
                        Some(place) => Some(place),
                        None => {
                            // This address holds all the connections it may.
                            if caps.counted {
                                metrics::counter!(CONNECTIONS_REJECTED_PER_IP_TOTAL).increment(1);
                            }
                            drop(stream);
                            continue;
                        }
                    },
                    _ => None,
                };
                let guard = open.open();
                // The permits go when the connection ends. A combinator, not an async
                // block: a block keeps the connection's future twice (the captured one and
                // the one it awaits), for the connection's life.
                let served = serve_conn(stream, peer).map(move |()| {
                    drop(peer_permit);
                    drop(permit);
                    drop(guard);
                });
                tokio::task::spawn_local(served);
            }
            Err(e) => {
                metrics::counter!(ACCEPT_ERRORS_TOTAL).increment(1);
                let out_of_descriptors = matches!(
                    e.raw_os_error(),
                    Some(nix::libc::EMFILE | nix::libc::ENFILE)
                );
                let closing = if out_of_descriptors {
                    idle::close_oldest_idle(RECLAIM_AT_ONCE)
                } else {
                    0
                };
                if let Some(count) = errors.failed(Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        count,
                        closing_idle = closing,
                        "accept failed ({count} since the last such line; one a second at most)"
                    );
                }
                // The connections asked to close free their descriptors once their tasks
                // run: a millisecond. With none to close, back off instead of spinning.
                let pause = if closing > 0 { 1 } else { 50 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
    // Closed now, so the kernel stops queueing connections for this thread: with
    // SO_REUSEPORT the group's other sockets (another instance's) take them.
    drop(listener);
    open
}

/// Idle connections asked to close at once when the open-file limit refuses an accept:
/// enough for a burst of new clients to find room in one round.
const RECLAIM_AT_ONCE: usize = 16;

/// Longest silence between two lines about failed accepts.
const ERROR_LINE_EVERY: Duration = Duration::from_secs(1);

/// Failed accepts, logged at most once a second (a full descriptor table fails every
/// accept, thousands a second): each line says how many failed since the last.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_line: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    /// Counts a failure at `now`; `Some(n)` when a line is due, for these `n` failures.
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last_line
            .is_some_and(|last| now < last + ERROR_LINE_EVERY)
        {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The public listener on one I/O thread (any backend): serves until the drain begins,
/// then closes the listener and returns once every connection this thread accepted has
/// closed (the control thread enforces the drain deadline). Must run inside a `LocalSet`.
pub async fn serve_public<L: Listener>(
    listener: L,
    settings: Arc<ConnSettings>,
    all: Arc<Semaphore>,
) {
    let caps = Caps {
        all,
        per_peer: Some(Arc::clone(&settings.peer_cap)),
        counted: true,
    };
    let stop = settings.gateway.lifecycle.shutdown.drain_started();
    let open = serve(listener, caps, stop, |stream, peer| {
        conn::serve(stream, peer, Arc::clone(&settings))
    })
    .await;
    open.all_closed().await;
}

/// A thread's open connections.
#[derive(Default, Clone)]
pub struct Open(Rc<OpenConnections>);

impl Open {
    fn open(&self) -> OpenGuard {
        OpenConnections::open(&self.0)
    }

    /// Resolves once every connection counted here has closed.
    pub async fn all_closed(&self) {
        self.0.all_closed().await;
    }
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

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_make_one_line_a_second_with_a_count() {
        let mut errors = AcceptErrors::default();
        let start = Instant::now();
        assert_eq!(errors.failed(Instant::now()), Some(1));
        // A thousand more within the second: no line.
        for _ in 0..1000 {
            assert_eq!(errors.failed(Instant::now()), None);
        }
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(errors.failed(Instant::now()), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        // The next line counts every failure since the last one, itself included.
        assert_eq!(errors.failed(Instant::now()), Some(1002));
        assert_eq!(Instant::now() - start, ERROR_LINE_EVERY);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(errors.failed(Instant::now()), Some(1));
    }

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
