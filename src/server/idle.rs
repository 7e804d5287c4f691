//! Per-connection activity tracking, for the keep-alive idle timeout.
//!
//! hyper's HTTP/2 server has no idle timeout, so every connection's I/O goes through
//! [`Tracked`], which stamps the last byte moved, and every request holds an [`InFlight`]
//! guard. A connection with no request in flight and no byte moved for the idle timeout is
//! asked to close gracefully. On HTTP/1.1 it also follows the inbound framing, for the
//! smuggling guard (`h1_framing`).
//!
//! Each I/O thread also keeps a list of its served connections ([`register`]): at the
//! open-file limit its accept loop asks the ones idle longest to close
//! ([`close_oldest_idle`]), as nginx reuses keep-alive connections, so that a new client is
//! served rather than left in the backlog.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::server::h1_framing::Framing;
use crate::server::park::Gate;

/// The last time a connection moved a byte, how many of its requests are in flight, and
/// how many it has begun against its cap.
#[derive(Debug)]
pub struct Activity {
    last: Cell<Instant>,
    in_flight: Cell<usize>,
    begun: Cell<u64>,
    /// Requests after which the connection should close; 0 = never.
    cap: Cell<u64>,
    cap_reached: Notify,
    /// The first request (0-based) whose head framed its body two ways.
    ambiguous: Cell<Option<u64>>,
    /// Asked to close to make room for a new connection ([`close_oldest_idle`]).
    reclaim: Notify,
    reclaimed: Cell<bool>,
    /// Asked to park (see `park`) and not parked yet; a byte read withdraws it.
    park_asked: Cell<bool>,
}

impl Activity {
    /// A connection that was active just now.
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            last: Cell::new(Instant::now()),
            in_flight: Cell::new(0),
            begun: Cell::new(0),
            cap: Cell::new(0),
            cap_reached: Notify::new(),
            ambiguous: Cell::new(None),
            reclaim: Notify::new(),
            reclaimed: Cell::new(false),
            park_asked: Cell::new(false),
        })
    }

    /// Resolves once the accept loop asked this connection to close to make room.
    pub async fn reclaimed(&self) {
        self.reclaim.notified().await;
    }

    /// Requests begun so far: the index the next one will have.
    pub fn begun(&self) -> u64 {
        self.begun.get()
    }

    /// Marks request `index` (0-based) as framed two ways (`Content-Length` and
    /// `Transfer-Encoding`); only the first counts, since hyper closes the connection
    /// after it.
    pub fn flag_ambiguous_request(&self, index: u64) {
        if self.ambiguous.get().is_none() {
            self.ambiguous.set(Some(index));
        }
    }

    /// Whether request `index` was framed two ways.
    pub fn is_ambiguous(&self, index: u64) -> bool {
        self.ambiguous.get() == Some(index)
    }

    /// Closes the connection (see [`Activity::request_cap_reached`]) once it has begun
    /// `cap` requests; 0 = never.
    pub fn set_request_cap(&self, cap: u64) {
        self.cap.set(cap);
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin_request(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        let begun = self.begun.get() + 1;
        self.begun.set(begun);
        if begun == self.cap.get() {
            self.cap_reached.notify_one();
        }
        InFlight(Rc::clone(self))
    }

    /// Whether the connection has begun as many requests as its cap.
    pub fn at_request_cap(&self) -> bool {
        let cap = self.cap.get();
        cap > 0 && self.begun.get() >= cap
    }

    /// Resolves once the connection has begun as many requests as its cap.
    pub async fn request_cap_reached(&self) {
        self.cap_reached.notified().await;
    }

    /// Counts now as activity: an idle period is measured from here at the earliest.
    pub fn touch(&self) {
        self.last.set(Instant::now());
    }

    /// Bytes arrived from the client: activity, and no reason to park any more.
    pub fn read_bytes(&self) {
        self.touch();
        self.park_asked.set(false);
    }

    /// Asks the connection to park at its next safe point (`park`).
    pub fn ask_to_park(&self) {
        self.park_asked.set(true);
    }

    /// Whether the connection has been asked to park and has not yet.
    pub fn park_asked(&self) -> bool {
        self.park_asked.get()
    }

    /// Whether no request is in flight.
    pub fn no_request_in_flight(&self) -> bool {
        self.in_flight.get() == 0
    }

    /// Resolves once the connection has been idle for `timeout`: no request in flight and
    /// no byte read or written.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let deadline = if self.in_flight.get() > 0 {
                Instant::now() + timeout
            } else {
                self.last.get() + timeout
            };
            tokio::time::sleep_until(deadline).await;
            if self.in_flight.get() == 0 && self.last.get() + timeout <= Instant::now() {
                return;
            }
        }
    }
}

thread_local! {
    /// This thread's served connections, by registration number.
    static SERVED: RefCell<Served> = RefCell::new(Served::default());
}

#[derive(Default)]
struct Served {
    next: u64,
    conns: HashMap<u64, Weak<Activity>>,
}

/// A connection's place in its thread's list; leaves the list when dropped.
#[derive(Debug)]
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        SERVED.with(|s| s.borrow_mut().conns.remove(&self.0));
    }
}

/// Lists a connection on this thread (once its handshake is done), for
/// [`close_oldest_idle`].
pub fn register(activity: &Rc<Activity>) -> Registration {
    SERVED.with(|s| {
        let mut s = s.borrow_mut();
        let id = s.next;
        s.next += 1;
        s.conns.insert(id, Rc::downgrade(activity));
        Registration(id)
    })
}

/// Asks up to `n` of this thread's connections with no request in flight to close, those
/// idle longest first; returns how many were asked. An HTTP/1.1 keep-alive connection
/// closes at once, an HTTP/2 one after its GOAWAY.
pub fn close_oldest_idle(n: usize) -> usize {
    let mut idle: Vec<Rc<Activity>> = SERVED.with(|s| {
        s.borrow()
            .conns
            .values()
            .filter_map(Weak::upgrade)
            .filter(|a| a.in_flight.get() == 0 && !a.reclaimed.get())
            .collect()
    });
    idle.sort_by_key(|a| a.last.get());
    idle.truncate(n);
    for activity in &idle {
        activity.reclaimed.set(true);
        activity.reclaim.notify_one();
    }
    idle.len()
}

/// Asks the connection to park ([`Activity::ask_to_park`], see `park`) whenever it has been
/// quiet for `after` since its last request; never resolves. Asking wakes the connection's
/// task, so that hyper reads again and the stream can answer.
pub async fn ask_to_park_when_quiet(activity: &Activity, after: Duration) {
    loop {
        activity.idle_for(after).await;
        // A connection that has not sent a request yet is left to hyper's header timer
        // (the slowloris guard): parked, it would wait for the idle timeout instead.
        if activity.begun() > 0 {
            activity.ask_to_park();
            tokio::task::yield_now().await;
        }
        // Asked and not parked (an answer still leaving, say): ask again after a while.
        tokio::time::sleep(after).await;
    }
}

/// Holds one request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight(Rc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        self.0.touch();
    }
}

/// An I/O stream that stamps its [`Activity`] whenever bytes move, and on HTTP/1.1
/// parks the connection when asked to (see `park`).
#[derive(Debug)]
pub struct Tracked<IO> {
    inner: IO,
    activity: Rc<Activity>,
    vectored: bool,
    framing: Option<Framing>,
    gate: Gate,
}

impl<IO> Tracked<IO> {
    /// Wraps `inner`, reporting to `activity`.
    pub fn new(inner: IO, activity: Rc<Activity>) -> Self {
        Self {
            inner,
            activity,
            vectored: true,
            framing: None,
            gate: Gate::default(),
        }
    }

    /// The stream beneath.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.inner
    }

    /// Whether the stream answered hyper's read with an end of stream to park the
    /// connection; clears it, for the next hyper connection over this stream.
    pub fn take_parked(&mut self) -> bool {
        self.gate.take_parked()
    }

    /// Whether the stream answered hyper's read with an end of stream to park the
    /// connection (not cleared).
    pub fn is_parked(&self) -> bool {
        self.gate.is_parked()
    }

    /// Whether the connection could park now but for the asking: HTTP/1.1, between
    /// requests by the framing, no request in flight.
    fn idle_between_requests(&self) -> bool {
        self.activity.no_request_in_flight()
            && self.framing.as_ref().is_some_and(Framing::between_messages)
    }

    /// Follows the HTTP/1.1 framing of what is read, flagging a request framed two ways
    /// in the activity (see `h1_framing`); heads are at most `max_head` bytes.
    pub fn watching_framing(mut self, max_head: usize) -> Self {
        self.framing = Some(Framing::new(max_head));
        self
    }

    /// Says vectored writes are not supported, whatever `inner` does.
    ///
    /// For HTTP/2: given vectored writes, the `h2` crate chains every DATA payload over
    /// 256 bytes instead of copying it, and writes (one TLS record, one `writev`) before it
    /// can queue the next frame — one syscall per answer of a typical `/predict` size. Told
    /// otherwise, it copies payloads up to 1 KiB into its buffer, and the answers of all the
    /// streams ready at once leave in one write.
    pub fn without_vectored_writes(mut self) -> Self {
        self.vectored = false;
        self
    }
}

impl<IO: AsyncRead + Unpin> Tracked<IO> {
    fn poll_read_below(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.gate.read_below(poll.is_pending());
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_bytes();
            if let Some(index) = self
                .framing
                .as_mut()
                .and_then(|f| f.feed(&buf.filled()[before..]))
            {
                self.activity.flag_ambiguous_request(index);
            }
        }
        poll
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.gate.is_parked() {
            return Poll::Ready(Ok(()));
        }
        if this.activity.park_asked() {
            let idle = this.idle_between_requests();
            if this.gate.needs_read_below(idle) {
                // Whatever is below goes to hyper first: parking needs an empty read.
                let poll = this.poll_read_below(cx, buf);
                if poll.is_ready() {
                    return poll;
                }
            }
            if this.gate.may_park(idle) {
                // The end of the stream, to hyper: a client closing between requests.
                this.gate.park();
                this.activity.park_asked.set(false);
                return Poll::Ready(Ok(()));
            }
        }
        this.poll_read_below(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.gate.wrote();
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.gate.wrote();
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored && self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(poll, Poll::Ready(Ok(()))) {
            self.gate.flushed();
        }
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::server::conn::http2;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::server::conn::LocalExec;

    /// Whether `activity` has been asked to close (without waiting).
    fn asked(activity: &Activity) -> bool {
        use futures_util::FutureExt as _;
        activity.reclaimed().now_or_never().is_some()
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_idle_connections_are_asked_to_close_first() {
        let (old, busy, newer, newest) = (
            Activity::new(),
            Activity::new(),
            Activity::new(),
            Activity::new(),
        );
        let registrations: Vec<_> = [&old, &busy, &newer, &newest].map(register).into();
        tokio::time::advance(Duration::from_secs(1)).await;
        newer.touch();
        tokio::time::advance(Duration::from_secs(1)).await;
        newest.touch();
        // The oldest of all has a request in flight: it is not idle.
        let request = busy.begin_request();
        assert_eq!(close_oldest_idle(2), 2);
        assert!(asked(&old) && asked(&newer));
        assert!(!asked(&busy) && !asked(&newest));
        // Asked once is enough: the next round asks the others.
        assert_eq!(close_oldest_idle(5), 1);
        assert!(asked(&newest));
        drop(request);
        assert_eq!(close_oldest_idle(5), 1);
        // A connection that closed has left the list.
        drop(registrations);
        assert_eq!(close_oldest_idle(5), 0);
    }

    /// A stream that says it does vectored writes (as TLS does) and counts the writes made.
    struct CountingWrites<S> {
        inner: S,
        writes: Rc<Cell<usize>>,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for CountingWrites<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for CountingWrites<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.set(self.writes.get() + 1);
            Pin::new(&mut self.inner).poll_write(cx, data)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.writes.set(self.writes.get() + 1);
            Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Serves `answers` concurrent HTTP/2 requests, each answered with a `/predict`-sized
    /// body, and returns how many writes the server made.
    async fn server_writes(answers: usize, vectored: bool) -> usize {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let writes = Rc::new(Cell::new(0));
        let counted = CountingWrites {
            inner: server_io,
            writes: Rc::clone(&writes),
        };
        let tracked = Tracked::new(counted, Activity::new());
        let tracked = if vectored {
            tracked
        } else {
            tracked.without_vectored_writes()
        };
        let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; 400]))))
        });
        let server =
            http2::Builder::new(LocalExec).serve_connection(TokioIo::new(tracked), service);
        tokio::task::spawn_local(server);
        let (sender, connection) =
            hyper::client::conn::http2::handshake(LocalExec, TokioIo::new(client_io))
                .await
                .unwrap();
        tokio::task::spawn_local(connection);
        let before = writes.get();
        let requests = (0..answers).map(|_| {
            let mut sender = sender.clone();
            async move {
                let req = Request::get("http://x/")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = sender.send_request(req).await.unwrap();
                response
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .len()
            }
        });
        let sizes = futures_util::future::join_all(requests).await;
        assert!(sizes.iter().all(|&n| n == 400));
        writes.get() - before
    }

    #[tokio::test]
    async fn http2_answers_ready_together_leave_together_without_vectored_writes() {
        let local = tokio::task::LocalSet::new();
        let (vectored, copied) = local
            .run_until(async {
                (
                    server_writes(20, true).await,
                    server_writes(20, false).await,
                )
            })
            .await;
        // Told "vectored", h2 chains each 400-byte DATA payload and writes before queuing
        // the next frame: a write per answer at least.
        assert!(vectored >= 20, "vectored: {vectored} writes for 20 answers");
        // Told otherwise, it copies them into one buffer: a few writes for all twenty.
        assert!(
            copied * 4 <= vectored,
            "copied: {copied} writes, vectored: {vectored}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_in_flight_requests() {
        let activity = Activity::new();
        let guard = activity.begin_request();
        let idle = activity.idle_for(Duration::from_secs(5));
        tokio::pin!(idle);
        // A request in flight keeps the connection busy however long it takes.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), idle.as_mut())
                .await
                .is_err()
        );
        drop(guard);
        let started = Instant::now();
        idle.await;
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_touch_restarts_the_idle_period() {
        let activity = Activity::new();
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Long idle already; a touch (the drain starting) gives it the full period again.
        activity.touch();
        let started = Instant::now();
        activity.idle_for(Duration::from_secs(1)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn asks_after_the_quiet_period_once_a_request_was_served() {
        use futures_util::FutureExt as _;
        let activity = Activity::new();
        let after = Duration::from_secs(1);
        let asking = ask_to_park_when_quiet(&activity, after);
        tokio::pin!(asking);
        // No request yet: never asked, however long it is quiet.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!((&mut asking).now_or_never().is_none());
        assert!(!activity.park_asked());
        drop(activity.begin_request());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!((&mut asking).now_or_never().is_none());
        assert!(!activity.park_asked());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!((&mut asking).now_or_never().is_none());
        assert!(activity.park_asked());
        // Bytes read withdraw the question.
        activity.read_bytes();
        assert!(!activity.park_asked());
    }
}
