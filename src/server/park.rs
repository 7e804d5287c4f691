//! Parking idle HTTP/1.1 keep-alive connections: an idle connection gives up hyper (its
//! state, its 8 KiB read buffer, its header timer) and waits for the client's next bytes
//! with no read buffer at all, as nginx frees a keep-alive connection's request and buffers.
//!
//! How a connection parks (`conn::serve_h1` drives it):
//! 1. `idle::ask_to_park_when_quiet` asks once the connection has been quiet for
//!    `park_after` (no request in flight, no byte moved) after at least one request.
//! 2. The connection's stream (`idle::Tracked`) answers hyper's next read with the end of
//!    the stream, but only at a safe point ([`Gate`]): between requests by the inbound
//!    framing, every answer flushed, and its own stream last found empty. hyper takes that
//!    as a client closing a keep-alive connection and finishes without shutting the stream
//!    down (`poll_without_shutdown`); `conn` takes the stream back from it.
//! 3. The stream waits to be readable ([`WaitReadable`]: epoll readiness, or for io_uring a
//!    small read in flight), then a new hyper connection takes it over, with the same
//!    service and settings. The idle timeout, the drain and reclaiming at the open-file
//!    limit close a parked connection as they close any idle one.
//!
//! A bonus: hyper's header timer counts from the end of the previous answer, so on a
//! connection never parked `header_read_timeout_ms` (10 s), not `keepalive_idle_timeout_ms`
//! (75 s), closes an idle keep-alive connection. A parked one starts its next head's timer
//! at its first byte, as nginx's `client_header_timeout`.

use std::future::Future;
use std::io;
use std::task::{Context, Poll};

use tokio::io::DuplexStream;
use tokio::net::{TcpStream, UnixStream};

/// A byte stream that can wait for its peer's next bytes without holding a read buffer.
pub trait WaitReadable {
    /// Whether connections over this stream are parked at all (a stream that cannot wait
    /// for readability without reading is never parked).
    const PARKS: bool = true;

    /// Ready once a read would not wait: bytes, the end of the stream or an error are
    /// there. Holds no buffer while it waits (io_uring: a small one, see `uring::stream`).
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Resolves once `stream` is readable (see [`WaitReadable::poll_read_ready`]).
pub fn readable<S: WaitReadable>(stream: &mut S) -> impl Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| stream.poll_read_ready(cx))
}

impl WaitReadable for TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl WaitReadable for UnixStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        UnixStream::poll_read_ready(self, cx)
    }
}

/// The in-process test rig's stream: no readiness without a read, so never parked.
impl WaitReadable for DuplexStream {
    const PARKS: bool = false;

    fn poll_read_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl<S: WaitReadable + ?Sized> WaitReadable for Box<S> {
    const PARKS: bool = S::PARKS;

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}

/// When a connection may park: the pure state its stream keeps (`idle::Tracked`).
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// The last read of the stream beneath found nothing (`Pending`): nothing is buffered
    /// below that hyper has not had.
    below_empty: bool,
    /// Every byte hyper wrote has been flushed (its last write-side call was a flush that
    /// completed): no answer is half sent.
    flushed: bool,
    /// The stream answered hyper with the end of the stream to park it.
    parked: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            below_empty: false,
            flushed: true,
            parked: false,
        }
    }
}

impl Gate {
    /// A read of the stream beneath returned `pending` (`true`: nothing there yet).
    pub fn read_below(&mut self, pending: bool) {
        self.below_empty = pending;
    }

    /// hyper wrote (or tried to): an answer is on its way.
    pub fn wrote(&mut self) {
        self.flushed = false;
    }

    /// A flush completed: everything written has left.
    pub fn flushed(&mut self) {
        self.flushed = true;
    }

    /// Whether hyper's read may be answered with the end of the stream now, given that
    /// parking was asked for, no request is in flight and the inbound framing is between
    /// requests. `false` with `below_empty` unknown: read below first.
    pub fn may_park(&self, idle_between_requests: bool) -> bool {
        idle_between_requests && self.flushed && self.below_empty
    }

    /// Whether parking waits only on a read below (everything else allows it).
    pub fn needs_read_below(&self, idle_between_requests: bool) -> bool {
        idle_between_requests && self.flushed && !self.below_empty
    }

    /// Marks the stream parked.
    pub fn park(&mut self) {
        self.parked = true;
    }

    /// Whether the stream was parked; clears it (the stream is about to be served again).
    pub fn take_parked(&mut self) -> bool {
        std::mem::take(&mut self.parked)
    }

    /// Whether the stream is parked now.
    pub fn is_parked(&self) -> bool {
        self.parked
    }
}

/// The number of parked connections, as a gauge, while one is parked.
#[derive(Debug)]
pub struct Parked;

impl Parked {
    /// Counts one more parked connection until dropped.
    pub fn count() -> Self {
        metrics::gauge!(crate::metrics::CONNECTIONS_PARKED).increment(1.0);
        Self
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::CONNECTIONS_PARKED).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_parks_only_between_requests_flushed_and_read_empty() {
        let mut gate = Gate::default();
        // Nothing read below yet: read first.
        assert!(!gate.may_park(true));
        assert!(gate.needs_read_below(true));
        gate.read_below(true);
        assert!(gate.may_park(true));
        // Mid-request (or a request in flight): never.
        assert!(!gate.may_park(false));
        assert!(!gate.needs_read_below(false));
        // An answer written and not yet flushed: not until the flush.
        gate.wrote();
        assert!(!gate.may_park(true));
        assert!(!gate.needs_read_below(true));
        gate.flushed();
        assert!(gate.may_park(true));
        // Bytes read below: read again before parking.
        gate.read_below(false);
        assert!(!gate.may_park(true));
        assert!(gate.needs_read_below(true));
    }

    #[test]
    fn parked_is_taken_once() {
        let mut gate = Gate::default();
        assert!(!gate.is_parked());
        gate.park();
        assert!(gate.is_parked());
        assert!(gate.take_parked());
        assert!(!gate.take_parked());
    }
}
