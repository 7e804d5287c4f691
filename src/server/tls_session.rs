//! [`TlsSession`]: a server TLS session over any byte stream, on rustls' unbuffered API,
//! as the tokio `AsyncRead + AsyncWrite` that hyper takes.
//!
//! The session owns its buffers (rustls' buffered connection keeps a 4 KiB read buffer
//! for the connection's life): received ciphertext is decrypted from `incoming`, answers
//! are encrypted straight into `outgoing` (no buffer of rustls' own between, no allocation
//! per record sent), and a session waiting for a parked connection's next bytes holds
//! neither (see `park`).
//!
//! Invariants:
//! - `incoming[..filled]` holds only bytes rustls has not yet consumed: every call of
//!   `process_tls_records` is followed by its discard before the next.
//! - rustls' queue of decrypted records is emptied at every `ReadTraffic` state; what the
//!   caller had no room for waits in `plain`, so rustls never sits on plaintext and
//!   `WriteTraffic` can always be reached by processing what `incoming` holds.
//! - Encrypted bytes leave in the order they were produced: handshake records, alerts and
//!   answers all go through `outgoing`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::park::WaitReadable;

/// A read of the socket while no record needs more: a request in a record or two.
const READ_CHUNK: usize = 4 * 1024;

/// The largest TLS record on the wire (16 KiB of payload, 256 bytes of expansion, the
/// 5-byte header): the read after one that filled its room (an upload, a burst of HTTP/2
/// frames) takes a whole one.
const MAX_RECORD: usize = 16 * 1024 + 256 + 5;

/// Ciphertext held unprocessed before the session gives up: rustls joins a handshake
/// message split across records in this buffer, up to its own 64 KiB cap.
const MAX_INCOMING: usize = 0xffff + MAX_RECORD;

/// Plaintext encrypted per write: four records.
const WRITE_CHUNK: usize = 4 * 16 * 1024;

/// Encrypted bytes held unsent beyond which a write waits for the socket.
const OUTGOING_HIGH: usize = 64 * 1024;

/// A buffer that grew past this (an upload, a large answer) is not kept once empty.
const KEEP_BUFFER: usize = 4 * MAX_RECORD;

/// Room for what encrypting `len` bytes adds: a header, a tag and a content type per
/// record (rustls asks for more if it needs it).
fn sealed_len(len: usize) -> usize {
    len + (len / (16 * 1024) + 1) * 64
}

/// What `advance` was asked to write once rustls allows application data.
#[derive(Clone, Copy)]
enum Write<'a> {
    Nothing,
    Data(&'a [u8]),
    CloseNotify,
}

/// Where `advance` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Advanced {
    /// The caller's read buffer is full.
    Delivered,
    /// Nothing more can be done without more bytes from the peer.
    NeedsBytes,
    /// The write asked for is in `outgoing`.
    Wrote,
    /// Both sides have sent close_notify.
    Closed,
}

/// A TLS session over `S`, past its handshake (see the module doc).
pub struct TlsSession<S> {
    io: S,
    tls: UnbufferedServerConnection,
    /// Received ciphertext, `incoming[..filled]`; the rest is room for the next read.
    incoming: Vec<u8>,
    filled: usize,
    /// The last read filled its room: more is on its way, read a record's worth.
    read_big: bool,
    /// Decrypted bytes the caller had no room for, `plain[plain_read..]` unread.
    plain: Vec<u8>,
    plain_read: usize,
    /// Encrypted bytes to send, `outgoing[sent..]` not yet taken by the socket.
    outgoing: Vec<u8>,
    sent: usize,
    /// The socket ended.
    eof: bool,
    /// The peer sent close_notify: no more application data comes.
    peer_closed: bool,
    /// Both sides have sent close_notify.
    closed: bool,
    /// Our close_notify is queued.
    close_queued: bool,
}

/// Performs the server side of a TLS handshake on `io` with `config`.
///
/// Bytes the client sent after its handshake (a first request in the same flight) are kept
/// for the first read.
pub async fn accept<S>(io: S, config: Arc<ServerConfig>) -> io::Result<TlsSession<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let tls = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut session = TlsSession {
        io,
        tls,
        incoming: Vec::new(),
        filled: 0,
        read_big: false,
        plain: Vec::new(),
        plain_read: 0,
        outgoing: Vec::new(),
        sent: 0,
        eof: false,
        peer_closed: false,
        closed: false,
        close_queued: false,
    };
    std::future::poll_fn(|cx| session.poll_handshake(cx)).await?;
    Ok(session)
}

impl<S> TlsSession<S> {
    /// The negotiated TLS state: ALPN protocol, the client's certificates, the version.
    pub fn state(&self) -> &CommonState {
        &self.tls
    }

    fn plain_unread(&self) -> usize {
        self.plain.len() - self.plain_read
    }

    /// Drops the buffers of an idle session: what a parked connection does not hold.
    fn release_idle_buffers(&mut self) {
        if self.filled == 0 {
            self.incoming = Vec::new();
        }
        if self.plain_unread() == 0 {
            self.plain = Vec::new();
            self.plain_read = 0;
        }
        if self.sent == self.outgoing.len() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
    }

    /// Runs rustls over the received bytes until it needs more of them, `out` is full, or
    /// (with `write` other than `Nothing`) the write is done. Decrypted bytes go to `out`
    /// as far as it has room (`plain` empty), the rest to `plain`; handshake records,
    /// alerts and `write`'s records are appended to `outgoing`.
    fn advance(
        &mut self,
        mut out: Option<&mut ReadBuf<'_>>,
        write: Write<'_>,
    ) -> io::Result<Advanced> {
        loop {
            let UnbufferedStatus { discard, state } = self
                .tls
                .process_tls_records(&mut self.incoming[..self.filled]);
            let mut discard = discard;
            let stop = match state {
                Err(e) => {
                    // The rest of the buffer is not this session's to read any more.
                    self.filled = 0;
                    self.last_gasp();
                    return Err(tls_error(e));
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        let payload = record.payload;
                        let taken = match out.as_deref_mut() {
                            Some(out) if self.plain.len() == self.plain_read => {
                                let n = payload.len().min(out.remaining());
                                out.put_slice(&payload[..n]);
                                n
                            }
                            _ => 0,
                        };
                        if taken < payload.len() {
                            if self.plain_read == self.plain.len() {
                                self.plain.clear();
                                self.plain_read = 0;
                            }
                            self.plain.extend_from_slice(&payload[taken..]);
                        }
                    }
                    let full = out.as_deref().is_some_and(|out| out.remaining() == 0);
                    (matches!(write, Write::Nothing) && (full || self.plain_unread() > 0))
                        .then_some(Advanced::Delivered)
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    append(&mut self.outgoing, 512, |buf| {
                        encode.encode(buf).map_err(|e| match e {
                            EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            }) => Some(required_size),
                            EncodeError::AlreadyEncoded => None,
                        })
                    })?;
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // The records are in `outgoing`, sent ahead of anything queued after
                    // them by the caller's next flush (or the handshake's).
                    transmit.done();
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => Some(Advanced::NeedsBytes),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match write {
                    Write::Nothing => Some(Advanced::NeedsBytes),
                    Write::Data(data) => {
                        append(&mut self.outgoing, sealed_len(data.len()), |buf| {
                            traffic.encrypt(data, buf).map_err(sealing_room)
                        })?;
                        Some(Advanced::Wrote)
                    }
                    Write::CloseNotify => {
                        append(&mut self.outgoing, 64, |buf| {
                            traffic.queue_close_notify(buf).map_err(sealing_room)
                        })?;
                        Some(Advanced::Wrote)
                    }
                },
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    self.closed = true;
                    Some(Advanced::Closed)
                }
                // 0-RTT is never offered (`max_early_data_size` stays 0), and any state a
                // later rustls adds is one this session does not know how to serve.
                Ok(other) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unexpected TLS state {other:?}"),
                    ));
                }
            };
            self.discard(discard);
            if let Some(stop) = stop {
                return Ok(stop);
            }
        }
    }

    /// Removes `n` consumed bytes from the front of `incoming`.
    fn discard(&mut self, n: usize) {
        if n >= self.filled {
            self.filled = 0;
            if self.incoming.len() > KEEP_BUFFER {
                self.incoming = Vec::new();
            }
        } else if n > 0 {
            self.incoming.copy_within(n..self.filled, 0);
            self.filled -= n;
        }
    }

    /// After a TLS error: the alert rustls queued for it, into `outgoing` (sent if the
    /// socket takes it at once, see `poll_read`).
    fn last_gasp(&mut self) {
        let UnbufferedStatus { state, .. } = self.tls.process_tls_records(&mut []);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
            let _ = append(&mut self.outgoing, 64, |buf| {
                encode.encode(buf).map_err(|_| None)
            });
        }
    }
}

/// Appends what `f` writes to `buf`, with `room` bytes to write into, more if `f` says it
/// needs more (`Err(Some(n))`).
fn append(
    buf: &mut Vec<u8>,
    room: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> io::Result<()> {
    let start = buf.len();
    let mut room = room;
    loop {
        buf.resize(start + room, 0);
        match f(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                buf.truncate(start);
                return Err(io::Error::other("TLS record could not be encoded"));
            }
        }
    }
}

fn sealing_room(e: EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsSession<S> {
    /// Sends what `outgoing` holds, and flushes the stream beneath (io_uring's stages what
    /// it is given until a flush).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.outgoing.clear();
        self.sent = 0;
        if self.outgoing.capacity() > KEEP_BUFFER {
            self.outgoing = Vec::new();
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Reads more ciphertext into `incoming`; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.filled >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS message too large",
            )));
        }
        let room = if self.read_big {
            MAX_RECORD
        } else {
            READ_CHUNK
        };
        if self.incoming.len() < self.filled + room {
            self.incoming.resize(self.filled + room, 0);
        }
        let mut buf = ReadBuf::new(&mut self.incoming[self.filled..]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        self.read_big = n > 0 && n == buf.capacity();
        self.filled += n;
        Poll::Ready(Ok(n))
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let advanced = self.advance(None, Write::Nothing);
            // The alert of a failed handshake goes out before the error does.
            if self.sent < self.outgoing.len() {
                let sent = self.poll_send(cx);
                if advanced.is_ok() {
                    ready!(sent)?;
                }
            }
            if advanced? == Advanced::Closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.eof || self.peer_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                self.eof = true;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsSession<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.plain_unread() > 0 {
                let unread = &this.plain[this.plain_read..];
                let n = unread.len().min(out.remaining());
                out.put_slice(&unread[..n]);
                this.plain_read += n;
                return Poll::Ready(Ok(()));
            }
            let before = out.filled().len();
            let advanced = this.advance(Some(out), Write::Nothing);
            // A key update's answer, an alert: on its way (a socket that cannot take it now
            // gets it with the next flush).
            if this.sent < this.outgoing.len()
                && let Poll::Ready(Err(e)) = this.poll_send(cx)
            {
                advanced?;
                return Poll::Ready(Err(e));
            }
            let advanced = advanced?;
            if out.filled().len() > before || this.plain_unread() > 0 {
                return Poll::Ready(Ok(()));
            }
            if advanced == Advanced::Closed || this.peer_closed {
                // close_notify: the end of the stream.
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // The socket ended without close_notify (as rustls' own reader says it).
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            if ready!(this.poll_fill(cx))? == 0 {
                this.eof = true;
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsSession<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.outgoing.len() - this.sent >= OUTGOING_HIGH {
            ready!(this.poll_send(cx))?;
        }
        if this.closed || this.close_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let data = &data[..data.len().min(WRITE_CHUNK)];
        match this.advance(None, Write::Data(data))? {
            Advanced::Wrote => Poll::Ready(Ok(data.len())),
            Advanced::Closed => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Advanced::NeedsBytes | Advanced::Delivered => Poll::Ready(Err(io::Error::other(
                "TLS session cannot send application data",
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_queued && !this.closed {
            this.close_queued = true;
            // A session that failed cannot say close_notify; the socket still shuts down.
            let _ = this.advance(None, Write::CloseNotify);
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// Readable when its socket is, or when decrypted bytes wait. A connection parks only
/// once every record received has been decrypted and handed over and its socket had no
/// more (`park::Gate`), so `incoming` holds at most part of a record, which needs the
/// socket's next bytes; the buffers are let go while it waits.
impl<S: WaitReadable> WaitReadable for TlsSession<S> {
    const PARKS: bool = S::PARKS;

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.plain_unread() > 0 {
            return Poll::Ready(Ok(()));
        }
        self.release_idle_buffers();
        self.io.poll_read_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let (server, _, certificates) =
            crate::server::tls::server_config(&crate::server::tls::TlsSettings::default())
                .expect("dev certificate");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificates.leaf().expect("leaf")).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        (server, Arc::new(client))
    }

    /// A client on rustls' own buffered stream (tokio-rustls) against the session.
    async fn pair(
        buffer: usize,
    ) -> (
        tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
        TlsSession<tokio::io::DuplexStream>,
    ) {
        let (server_config, client_config) = configs();
        let (client_io, server_io) = tokio::io::duplex(buffer);
        let connector = tokio_rustls::TlsConnector::from(client_config);
        let name = ServerName::try_from("localhost").expect("name");
        let (client, server) = tokio::join!(
            connector.connect(name, client_io),
            accept(server_io, server_config)
        );
        (
            client.expect("client handshake"),
            server.expect("server handshake"),
        )
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_large_and_small() {
        let (mut client, mut server) = pair(4096).await;
        assert!(!server.state().is_handshaking());
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client.write_all(b"hello").await.unwrap();
            client.write_all(&sent).await.unwrap();
            client.flush().await.unwrap();
            let mut back = vec![0u8; 200_005];
            client.read_exact(&mut back).await.unwrap();
            client.shutdown().await.unwrap();
            (back, client)
        });
        let mut got = vec![0u8; 200_005];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"hello");
        assert_eq!(&got[5..], &big[..]);
        // Back in small writes and one large one, each flushed.
        server.write_all(&got[..5]).await.unwrap();
        server.flush().await.unwrap();
        server.write_all(&got[5..]).await.unwrap();
        server.flush().await.unwrap();
        let (back, mut client) = writer.await.unwrap();
        assert_eq!(back, got);
        // The client's close_notify is the end of the stream, and ours the client's.
        let mut rest = Vec::new();
        assert_eq!(server.read_to_end(&mut rest).await.unwrap(), 0);
        server.shutdown().await.unwrap();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_client_that_leaves_without_close_notify_is_an_unexpected_eof() {
        let (client, mut server) = pair(4096).await;
        let (io, _) = client.into_inner();
        drop(io);
        let mut buf = [0u8; 16];
        let err = server.read(&mut buf).await.expect_err("no close_notify");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn garbage_after_the_handshake_is_an_error_not_a_hang() {
        let (client, mut server) = pair(4096).await;
        let (mut io, _) = client.into_inner();
        io.write_all(&[23, 3, 3, 0, 40]).await.unwrap();
        io.write_all(&[0u8; 40]).await.unwrap();
        let mut buf = [0u8; 16];
        let err = server.read(&mut buf).await.expect_err("bad record");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_handshake_that_is_not_tls_fails() {
        let (server_config, _) = configs();
        let (mut client_io, server_io) = tokio::io::duplex(4096);
        client_io
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let err = accept(server_io, server_config)
            .await
            .err()
            .expect("not TLS");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // The alert was sent before the error.
        let mut alert = [0u8; 7];
        client_io.read_exact(&mut alert).await.unwrap();
        assert_eq!(alert[0], 21, "an alert record: {alert:?}");
    }

    #[tokio::test]
    async fn an_idle_session_lets_its_buffers_go() {
        let (mut client, mut server) = pair(64 * 1024).await;
        client.write_all(&[7u8; 10_000]).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; 10_000];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(&got).await.unwrap();
        server.flush().await.unwrap();
        assert!(server.incoming.capacity() > 0);
        // Waiting for the next bytes as a parked connection does (a duplex stream is
        // always ready): the buffers go first.
        crate::server::park::readable(&mut server).await.unwrap();
        assert_eq!(server.incoming.capacity(), 0);
        assert_eq!(server.outgoing.capacity(), 0);
        assert_eq!(server.plain.capacity(), 0);
        // And it serves on after.
        client.write_all(b"again").await.unwrap();
        client.flush().await.unwrap();
        let mut again = [0u8; 5];
        server.read_exact(&mut again).await.unwrap();
        assert_eq!(&again, b"again");
    }
}
