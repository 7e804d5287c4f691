//! One client connection: TLS handshake (bounded), protocol choice (ALPN, or the HTTP/2
//! preface on plaintext), then hyper's `http1` or `http2` server — never `auto::Builder`,
//! which never times out a connection that sends nothing.
//!
//! Generic over the byte stream so every listener backend (and the check socket) serves
//! connections the same way.
//!
//! The drain: an HTTP/2 connection gets GOAWAY at once (its client finishes its streams and
//! opens new ones elsewhere). An HTTP/1.1 connection is not closed under a client that may
//! be sending its next request at that very moment: every answer from then on carries
//! `Connection: close`, and a connection silent for `linger` since the drain began is
//! closed. A connection still in its handshake gets the same `linger` to send a request.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

use crate::metrics::{CONNECTION_TIMEOUTS_TOTAL, CONNECTIONS_RECLAIMED_TOTAL};
use crate::server::idle::{self, Activity, Tracked};
use crate::server::park::{self, Parked, WaitReadable};
use crate::server::peer_cap::PeerCap;
use crate::server::service::GatewayService;
use crate::server::tls_session;
use crate::state::Gateway;

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's HTTP/1 header count limit when none is set.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// What one connection's requests and HTTP/2 streams may hold (`[http]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Largest request head, bytes (431 above); on HTTP/2 the header list size.
    pub max_header_bytes: usize,
    /// Most header fields one request may carry (431 above).
    pub max_headers: usize,
    /// Streams one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// Requests one connection may carry before it is closed; 0 = no cap.
    pub max_requests_per_connection: u64,
}

/// Timeouts and TLS settings for every connection; shared by all I/O threads.
pub struct ConnSettings {
    /// The gateway the requests go to.
    pub gateway: Arc<Gateway>,
    /// `None` serves plaintext HTTP/1.1 and h2c (prior knowledge).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Longest a TLS handshake (or, in plaintext, the first bytes) may take.
    pub handshake_timeout: Duration,
    /// Longest an HTTP/1 request head may take to arrive.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Once the drain has begun, an HTTP/1.1 connection silent this long is closed.
    pub linger: Duration,
    /// An HTTP/1.1 keep-alive connection quiet this long is parked (`park`); `None`:
    /// never.
    pub park_after: Option<Duration>,
    /// Request head and HTTP/2 limits.
    pub http: HttpSettings,
    /// `Strict-Transport-Security` for every answer (TLS only).
    pub hsts: Option<HeaderValue>,
    /// Open connections per client address, against `http.max_connections_per_ip`.
    pub peer_cap: Arc<PeerCap>,
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A client of the check socket (a Unix-domain peer has no address worth logging).
    Unix,
}

impl Peer {
    /// The client's IP address, for the prediction log; `None` on a Unix socket.
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            Self::Tcp(addr) => Some(addr.ip().to_canonical()),
            Self::Unix => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => addr.fmt(f),
            Self::Unix => f.write_str("unix"),
        }
    }
}

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

/// Serves one accepted connection until it closes, times out, or the drain ends it.
pub async fn serve<S>(stream: S, peer: Peer, settings: Arc<ConnSettings>)
where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + 'static,
{
    let drain = settings.gateway.lifecycle.shutdown.subscribe();
    let _guard = settings.gateway.lifecycle.shutdown.track_connection();
    // A connection the drain catches before its first request still gets the linger: it
    // may be a deploy script on the check socket, or a client that connected just before
    // the listener closed. Made in a block around the first wait only: the task keeps no
    // slot for it while the connection is served.
    let grace = || drain_grace(drain.clone(), settings.linger);
    match &settings.tls {
        Some(config) => {
            // Pinned here, not moved into the timeout, so that a timed-out handshake still
            // holds the socket while the timeout is counted: a client that sees the close
            // then reads /metrics finds it counted.
            //
            // Boxed, as the session after it: a task's future is as large as its largest
            // state, kept for the connection's life, and an async fn keeps a slot for each
            // argument it passes on by value; a rustls session (about 1 KB) inline would
            // be kept several times over.
            //
            // The session is boxed inside the handshake's future: its result is a pointer,
            // not a session the task would keep a slot for.
            let config = Arc::clone(config);
            let mut handshake =
                Box::pin(async move { tls_session::accept(stream, config).await.map(Box::new) });
            let tls = {
                // Pinned in place (`std::pin::pin!`), here and below: `tokio::pin!` moves
                // the future into a second slot, and a task keeps both.
                let grace = std::pin::pin!(grace());
                tokio::select! {
                    r = tokio::time::timeout(settings.handshake_timeout, &mut handshake) => r,
                    () = grace => return,
                }
            };
            let tls = match tls {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics::counter!(CONNECTION_TIMEOUTS_TOTAL, "kind" => "tls_handshake")
                        .increment(1);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            drop(handshake);
            let proto = match tls.state().alpn_protocol() {
                Some(p) if p == super::tls::ALPN_H2 => Proto::H2,
                _ => Proto::H1,
            };
            // Present only when `tls.client_ca_path` verified it during the handshake.
            let client_cert = tls
                .state()
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| Arc::from(super::tls::client_name(cert)));
            serve_http(tls, proto, peer, client_cert, &settings, drain).await;
        }
        None => {
            // Pinned for the same reason as the handshake: counted before the close.
            let sniffed = {
                let mut sniffing = std::pin::pin!(sniff(stream));
                let grace = std::pin::pin!(grace());
                let sniffed = tokio::select! {
                    r = tokio::time::timeout(settings.handshake_timeout, sniffing.as_mut()) => r,
                    () = grace => return,
                };
                if sniffed.is_err() {
                    metrics::counter!(CONNECTION_TIMEOUTS_TOTAL, "kind" => "protocol_sniff")
                        .increment(1);
                }
                sniffed
            };
            match sniffed {
                Ok(Ok((proto, stream))) => {
                    // Boxed: a TLS listener's connections (most of them) keep no slot for
                    // the plaintext path in their task.
                    Box::pin(serve_http(stream, proto, peer, None, &settings, drain)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection closed early"),
                // Counted above, while the socket was still open.
                Err(_) => {}
            }
        }
    }
}

/// Resolves `linger` after the drain has begun.
async fn drain_grace(mut drain: watch::Receiver<bool>, linger: Duration) {
    let _ = drain.wait_for(|d| *d).await;
    tokio::time::sleep(linger).await;
}

/// Reads just enough of a plaintext connection to tell an HTTP/2 preface from HTTP/1.
async fn sniff<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<(Proto, Prefixed<S>)> {
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    let proto = loop {
        let mut chunk = [0u8; 24];
        let want = H2_PREFACE.len() - buf.len();
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&buf) {
            break Proto::H1;
        }
        if buf.len() == H2_PREFACE.len() {
            break Proto::H2;
        }
    };
    Ok((proto, Prefixed::new(Bytes::from(buf), stream)))
}

async fn serve_http<S>(
    stream: S,
    proto: Proto,
    peer: Peer,
    client_cert: Option<Arc<str>>,
    settings: &ConnSettings,
    drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + 'static,
{
    let activity = Activity::new();
    // Listed while it lives, so that the accept loop can close it when idle to make room.
    let _listed = idle::register(&activity);
    let tracked = Tracked::new(stream, Rc::clone(&activity));
    let service = GatewayService::new(
        Arc::clone(&settings.gateway),
        Rc::clone(&activity),
        peer.ip(),
        proto == Proto::H1,
    )
    .with_hsts(settings.hsts.clone())
    .with_client_cert(client_cert);
    activity.set_request_cap(settings.http.max_requests_per_connection);
    // Pinned here and lent: a future passed on by value would be kept twice in the
    // connection's task (see `serve`).
    let idle = std::pin::pin!(async {
        tokio::select! {
            () = activity.idle_for(settings.idle_timeout) => {
                metrics::counter!(CONNECTION_TIMEOUTS_TOTAL, "kind" => "idle").increment(1);
            }
            () = activity.reclaimed() => {
                metrics::counter!(CONNECTIONS_RECLAIMED_TOTAL).increment(1);
            }
        }
    });
    let result = match proto {
        Proto::H1 => {
            let tracked = tracked.watching_framing(settings.http.max_header_bytes);
            let closing = std::pin::pin!(closing_time(drain, &activity, Some(settings.linger)));
            serve_h1(tracked, service, settings, &activity, closing, idle).await
        }
        Proto::H2 => {
            let conn = Box::pin(
                http2::Builder::new(LocalExec)
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(settings.http.h2_max_concurrent_streams)
                    // h2 answers a larger header list with 431, and counts it across
                    // CONTINUATION frames (no CONTINUATION flood grows memory past it).
                    .max_header_list_size(
                        u32::try_from(settings.http.max_header_bytes).unwrap_or(u32::MAX),
                    )
                    .serve_connection(TokioIo::new(tracked.without_vectored_writes()), service),
            );
            let closing = std::pin::pin!(closing_time(drain, &activity, None));
            drive(conn, closing, idle).await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics::counter!(CONNECTION_TIMEOUTS_TOTAL, "kind" => "header_read").increment(1);
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Serves an HTTP/1.1 connection: hyper until the connection closes or, asked to park
/// (`park`), until it parks; a parked connection waits for the client's next bytes without
/// hyper, then a new hyper connection serves it on.
async fn serve_h1<S>(
    mut stream: Tracked<S>,
    mut service: GatewayService,
    settings: &ConnSettings,
    activity: &Activity,
    mut closing: Pin<&mut impl Future<Output = ()>>,
    mut idle: Pin<&mut impl Future<Output = ()>>,
) -> hyper::Result<()>
where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .keep_alive(true)
        // A larger head is a 431 from hyper, and the connection closed.
        .max_header_size(settings.http.max_header_bytes);
    // hyper's default is 100, on the stack; any other count costs a heap allocation per
    // request, so it is set only when asked for.
    if settings.http.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.max_headers(settings.http.max_headers);
    }
    let park_after = settings.park_after.filter(|_| S::PARKS);
    let mut closed = false;
    let result = loop {
        // One round of hyper, boxed: while the connection is parked, its task keeps none of
        // hyper's state nor the round's own (its park timer, its select).
        let (result, back, served) = Box::pin(h1_round(
            &builder,
            H1Round {
                stream,
                service,
                park_after,
                activity,
                closing: closing.as_mut(),
                idle: idle.as_mut(),
                closed: &mut closed,
            },
        ))
        .await;
        stream = back;
        service = served;
        if !stream.take_parked() || result.is_err() {
            break result;
        }
        if closed {
            // Asked to close as it parked: it is idle, so at once.
            break Ok(());
        }
        let parked = Parked::count();
        let woken = tokio::select! {
            ready = park::readable(stream.get_mut()) => ready.is_ok(),
            // The drain, the idle timeout or room wanted at the open-file limit: an idle
            // connection closes at once.
            () = closing.as_mut() => false,
            () = idle.as_mut() => false,
        };
        drop(parked);
        if !woken {
            break Ok(());
        }
    };
    // What hyper does at the end when not told otherwise, even after an error it answered
    // (a 400 for a head it cannot parse, which it returns only after): the rest of the
    // answer flushed, the TLS close_notify, the TCP FIN; bounded by the idle timeout.
    // (Dropped unflushed, an io_uring send still in flight would be cut off.)
    let _ = tokio::time::timeout(settings.idle_timeout, stream.shutdown()).await;
    result
}

/// What one round of hyper on an HTTP/1.1 connection takes (`h1_round`).
struct H1Round<'a, S, C, I> {
    stream: Tracked<S>,
    service: GatewayService,
    park_after: Option<Duration>,
    activity: &'a Activity,
    closing: Pin<&'a mut C>,
    idle: Pin<&'a mut I>,
    /// Set once the connection was asked to close gracefully.
    closed: &'a mut bool,
}

/// Serves requests with hyper until the connection closes or parks; gives back the stream
/// and the service. hyper's read buffer is dropped here, not kept while the connection
/// parks.
async fn h1_round<S, C, I>(
    builder: &http1::Builder,
    round: H1Round<'_, S, C, I>,
) -> (hyper::Result<()>, Tracked<S>, GatewayService)
where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin + 'static,
    C: Future<Output = ()>,
    I: Future<Output = ()>,
{
    let H1Round {
        stream,
        service,
        park_after,
        activity,
        mut closing,
        mut idle,
        closed,
    } = round;
    let mut conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut asking = std::pin::pin!(async {
        match park_after {
            Some(after) => idle::ask_to_park_when_quiet(activity, after).await,
            None => std::future::pending().await,
        }
    });
    let result = loop {
        tokio::select! {
            result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
            () = closing.as_mut(), if !*closed => {
                *closed = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = idle.as_mut(), if !*closed => {
                *closed = true;
                Pin::new(&mut conn).graceful_shutdown();
            }
            () = asking.as_mut() => {}
        }
    };
    let parts = conn.into_parts();
    // Parked, hyper kept no bytes it read: at a park point there are none, and with some
    // it would have ended with an error (an incomplete request).
    debug_assert!(!parts.io.inner().is_parked() || parts.read_buf.is_empty());
    (result, parts.io.into_inner(), parts.service)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A hyper server connection that can be asked to finish its requests and close.
trait GracefulConnection: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, E> GracefulConnection for http2::Connection<I, S, E>
where
    http2::Connection<I, S, E>: Future<Output = hyper::Result<()>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Resolves when the drain wants the connection closed: at once (`linger` `None`, for
/// HTTP/2), or once the connection has been silent — no request in flight, no byte moved —
/// for `linger` counted from the drain's start (HTTP/1.1, whose answers by then say
/// `Connection: close`, so this only closes a connection that sends nothing more).
async fn closing_time(
    mut drain: watch::Receiver<bool>,
    activity: &Activity,
    linger: Option<Duration>,
) {
    tokio::select! {
        _ = drain.wait_for(|d| *d) => {}
        // Enough requests on this connection: the one in flight is its last (HTTP/1.1
        // answers it with `Connection: close`; HTTP/2 sends GOAWAY), and the client
        // opens a new one, as under nginx's `keepalive_requests`.
        () = activity.request_cap_reached() => return,
    }
    if let Some(linger) = linger {
        activity.touch();
        activity.idle_for(linger).await;
    }
}

/// Polls `conn` to completion, asking it to close gracefully when `closing` (the drain)
/// resolves or `idle` does (idle too long, or closed to make room).
async fn drive<C: GracefulConnection>(
    mut conn: Pin<Box<C>>,
    mut closing: Pin<&mut impl Future<Output = ()>>,
    mut idle: Pin<&mut impl Future<Output = ()>>,
) -> hyper::Result<()> {
    let mut closed = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => return result,
            () = closing.as_mut(), if !closed => {
                closed = true;
                conn.as_mut().graceful_shutdown();
            }
            () = idle.as_mut(), if !closed => {
                closed = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Runs HTTP/2 stream tasks on the connection's own thread (`spawn_local`), so nothing
/// needs to be `Send` and no stream hops threads.
#[derive(Debug, Clone, Copy)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, reading `prefix` first.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: WaitReadable> WaitReadable for Prefixed<S> {
    const PARKS: bool = S::PARKS;

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_read_ready(cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn sniff_tells_h2_preface_from_http1() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(H2_PREFACE).await.unwrap();
        let (proto, mut rest) = sniff(server).await.unwrap();
        assert_eq!(proto, Proto::H2);
        let mut back = vec![0u8; H2_PREFACE.len()];
        rest.read_exact(&mut back).await.unwrap();
        assert_eq!(back, H2_PREFACE);

        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (proto, mut rest) = sniff(server).await.unwrap();
        assert_eq!(proto, Proto::H1);
        let mut back = [0u8; 5];
        rest.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"GET /");
    }
}
