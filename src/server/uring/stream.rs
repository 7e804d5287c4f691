//! [`UringStream`]: a tokio-uring `TcpStream` as the tokio `AsyncRead + AsyncWrite` that
//! tokio-rustls and hyper take.
//!
//! io_uring owns a buffer from submission to completion, so the adapter copies: received
//! bytes from its read buffer into the caller's, written bytes from the caller into its
//! staging buffer. At most one read and one write are in flight. Both buffers are reused
//! from op to op (the read buffer is replaced only when its size changes, see
//! [`MAX_READ_BUFFER`]), and the read's future lives in a slot allocated once per
//! connection, not boxed per read.
//!
//! Writes are staged and sent on `poll_flush` (or once [`WRITE_STAGE`] bytes are staged):
//! what rustls and hyper write for one answer leaves in one `send`. A flush is done when
//! the send has completed, as a flush on epoll is done when `send` has returned. (Done at
//! submission instead, it let hyper read on in the same tick, and measured no faster:
//! BENCHMARKS.md.) A short write sends its remainder before anything staged after it.
//!
//! Dropping the stream with an op in flight shuts the socket down first: tokio-uring never
//! cancels a dropped op, and a read on a silent peer would otherwise keep the socket (and
//! its descriptor) open forever after hyper closed the connection. hyper drops a
//! connection with a send in flight only when it gives up on it (a timeout, an error).

use std::future::Future;
use std::io;
use std::mem;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_uring::net::TcpStream;
use tokio_uring::{BufResult, InFlightOneshot, WriteData, WriteTransform};

use crate::server::park::WaitReadable;

/// The buffer of a read that waits for a client's next request (any read after one that
/// did not fill its buffer). An idle connection keeps a read in flight, and so this
/// buffer: a request head in one TLS record fits, and ten thousand idle connections hold
/// 10 MiB, not 80.
const IDLE_READ_BUFFER: usize = 1024;

/// The read after one that filled its buffer: more is on its way (an upload, a burst of
/// HTTP/2 frames).
const READ_BUFFER: usize = 8 * 1024;

/// A read that fills its buffer doubles the next one, up to this: an upload arrives in a
/// few large reads, not one 8 KiB op (and a tick) per 8 KiB. A read that does not fill
/// its buffer brings the next one back to [`IDLE_READ_BUFFER`].
const MAX_READ_BUFFER: usize = 64 * 1024;

/// Staged bytes that are sent without waiting for a flush; beyond this the caller is held
/// back (`Pending`) while a write is in flight.
const WRITE_STAGE: usize = 64 * 1024;

/// A write buffer that grew past this (for a large answer) is not kept for reuse.
const KEEP_WRITE_BUFFER: usize = 16 * 1024;

/// One read: the socket and the buffer go in, the count and the buffer come back.
pub(super) type ReadResult = BufResult<usize, Vec<u8>>;

/// Starts a read; [`read_op`] is the one used. A function pointer, so that the read's
/// future type (an `async fn`'s, unnameable) is a type parameter, inferred.
pub(super) type MakeRead<R> = fn(Rc<TcpStream>, Vec<u8>) -> R;

type WriteOp = InFlightOneshot<WriteData<Vec<u8>>, WriteTransform<Vec<u8>>>;

/// Reads into `buf`'s spare capacity.
pub(super) async fn read_op(socket: Rc<TcpStream>, buf: Vec<u8>) -> ReadResult {
    socket.read(buf).await
}

/// A connection served through the ring (see the module doc); `R` is [`read_op`]'s future.
pub(super) struct UringStream<R> {
    socket: Rc<TcpStream>,
    make_read: MakeRead<R>,
    /// The read in flight, in a slot reused for every read.
    read: Pin<Box<Option<R>>>,
    /// Received bytes, `received[consumed..]` not yet handed out; `None` while the buffer
    /// is with the kernel.
    received: Option<Vec<u8>>,
    consumed: usize,
    /// The size of the next read's buffer.
    next_read: usize,
    /// The write in flight; it owns the buffer being sent.
    write: Option<WriteOp>,
    /// Bytes accepted from the caller and not yet submitted.
    staged: Vec<u8>,
    /// A sent buffer back from the kernel, for the next submission.
    spare: Vec<u8>,
    /// A failed write, reported on the next write or flush.
    write_error: Option<io::Error>,
}

impl<R: Future<Output = ReadResult>> UringStream<R> {
    /// Serves `socket` through the ring, reading with `make_read` ([`read_op`]).
    pub(super) fn new(socket: TcpStream, make_read: MakeRead<R>) -> Self {
        Self {
            socket: Rc::new(socket),
            make_read,
            read: Box::pin(None),
            received: Some(Vec::with_capacity(IDLE_READ_BUFFER)),
            consumed: 0,
            next_read: IDLE_READ_BUFFER,
            write: None,
            staged: Vec::new(),
            spare: Vec::new(),
            write_error: None,
        }
    }

    /// Polls the write in flight, if any, to completion: a short write resubmits its
    /// remainder, a sent buffer becomes the spare, an error is kept for the caller.
    fn poll_write_op(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(op) = self.write.as_mut() {
            let (result, mut buf) = ready!(Pin::new(op).poll(cx));
            self.write = None;
            match result {
                Ok(n) if n >= buf.len() => {
                    buf.clear();
                    if buf.capacity() <= KEEP_WRITE_BUFFER {
                        self.spare = buf;
                    }
                }
                Ok(0) => {
                    self.write_error = Some(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    buf.drain(..n);
                    self.write = Some(self.socket.write(buf).submit());
                }
                Err(e) => self.write_error = Some(e),
            }
        }
        Poll::Ready(())
    }

    /// Hands the staged bytes to the kernel; nothing may be in flight.
    fn submit_staged(&mut self) {
        debug_assert!(self.write.is_none());
        let buf = mem::replace(&mut self.staged, mem::take(&mut self.spare));
        self.write = Some(self.socket.write(buf).submit());
    }

    /// Takes what fits of `bufs` into the stage, sending it if the stage filled up.
    fn poll_stage<'a>(
        &mut self,
        cx: &mut Context<'_>,
        bufs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Poll<io::Result<usize>> {
        let _ = self.poll_write_op(cx);
        if let Some(e) = self.write_error.take() {
            return Poll::Ready(Err(e));
        }
        if self.staged.len() >= WRITE_STAGE {
            if self.write.is_some() {
                // Woken by the write in flight.
                return Poll::Pending;
            }
            self.submit_staged();
        }
        let mut room = WRITE_STAGE - self.staged.len();
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(room);
            self.staged.extend_from_slice(&buf[..n]);
            taken += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        if self.staged.len() >= WRITE_STAGE && self.write.is_none() {
            self.submit_staged();
            // Registers the waker with the op just submitted.
            let _ = self.poll_write_op(cx);
        }
        Poll::Ready(Ok(taken))
    }
}

impl<R: Future<Output = ReadResult>> UringStream<R> {
    /// Ready once `received` holds unread bytes, or the stream ended (`Ok(false)`), or
    /// failed: submits a read if none is in flight and waits for it.
    fn poll_received(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if let Some(received) = &self.received
                && received.len() > self.consumed
            {
                return Poll::Ready(Ok(true));
            }
            if self.read.is_none() {
                let mut buf = match self.received.take() {
                    // The same size again: the buffer is reused.
                    Some(buf) if buf.capacity() == self.next_read => buf,
                    // Another size: a buffer of that size (a large one is freed on the way
                    // back down, not kept by an idle connection).
                    _ => Vec::with_capacity(self.next_read),
                };
                buf.clear();
                self.consumed = 0;
                let read = (self.make_read)(Rc::clone(&self.socket), buf);
                self.read.as_mut().set(Some(read));
            }
            let Some(read) = self.read.as_mut().as_pin_mut() else {
                unreachable!("a read was just put in the slot");
            };
            let (result, buf) = ready!(read.poll(cx));
            self.read.as_mut().set(None);
            self.next_read = match result {
                Ok(n) if n == buf.capacity() => (n * 2).clamp(READ_BUFFER, MAX_READ_BUFFER),
                _ => IDLE_READ_BUFFER,
            };
            self.received = Some(buf);
            match result {
                Ok(0) => return Poll::Ready(Ok(false)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<R: Future<Output = ReadResult>> AsyncRead for UringStream<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // End of stream: nothing put in `out`.
        if ready!(this.poll_received(cx))?
            && let Some(received) = &this.received
        {
            let unread = &received[this.consumed..];
            let n = unread.len().min(out.remaining());
            out.put_slice(&unread[..n]);
            this.consumed += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// Readable once the read in flight completes: a parked connection's only buffer is that
/// read's, [`IDLE_READ_BUFFER`] (io_uring has no readiness without a read, and tokio-uring
/// no `poll` op).
impl<R: Future<Output = ReadResult>> WaitReadable for UringStream<R> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write.is_none() && self.staged.is_empty() {
            // Nothing to send while it waits: the write buffers kept for reuse go too.
            self.staged = Vec::new();
            self.spare = Vec::new();
        }
        self.poll_received(cx).map_ok(|_| ())
    }
}

impl<R: Future<Output = ReadResult>> AsyncWrite for UringStream<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_stage(cx, [data])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Gathered into the stage: the copy an owned buffer needs anyway, and then one
        // `send` (a `writev` of the caller's slices would need them owned, a copy each).
        self.get_mut().poll_stage(cx, bufs.iter().map(|b| &**b))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.poll_write_op(cx));
            if let Some(e) = this.write_error.take() {
                return Poll::Ready(Err(e));
            }
            if this.staged.is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.submit_staged();
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        match self.socket.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<R> Drop for UringStream<R> {
    fn drop(&mut self) {
        if self.read.is_some() || self.write.is_some() {
            // Completes the ops in flight (a read returns 0, a send fails), so the kernel
            // lets go of the socket and its descriptor closes.
            let _ = self.socket.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// 4 MiB with no repeating 64 KiB window, so a chunk out of order or twice shows.
    fn pattern() -> Vec<u8> {
        (0..4u32 << 20)
            .map(|i| (i ^ (i >> 11) ^ (i >> 19)) as u8)
            .collect()
    }

    /// A client on a plain thread sends `data`, slowly reads what comes back; the server
    /// side is a `UringStream` that echoes everything, then shuts down.
    #[test]
    fn an_echo_of_4_mib_arrives_whole_and_in_order() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let data = pattern();
        let sent = data.clone();
        let client = std::thread::spawn(move || {
            let mut tcp = std::net::TcpStream::connect(addr).unwrap();
            let mut writer = tcp.try_clone().unwrap();
            let send = std::thread::spawn(move || {
                writer.write_all(&sent).unwrap();
                writer.shutdown(Shutdown::Write).unwrap();
            });
            let mut back = Vec::new();
            let mut chunk = vec![0u8; 7000];
            loop {
                // A slow reader: the server's sends back up and its writes wait.
                std::thread::sleep(std::time::Duration::from_micros(50));
                match tcp.read(&mut chunk).unwrap() {
                    0 => break,
                    n => back.extend_from_slice(&chunk[..n]),
                }
            }
            send.join().unwrap();
            back
        });
        let runtime = tokio_uring::Runtime::new(&tokio_uring::builder())
            .expect("io_uring (the tests need it, as the gateway's default backend does)");
        runtime.block_on(async {
            let (socket, _) = listener.accept().unwrap();
            let mut stream = UringStream::new(TcpStream::from_std(socket), read_op);
            let mut buf = vec![0u8; 3000];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                // Vectored, in two slices, as hyper and rustls write.
                let (a, b) = buf[..n].split_at(n / 3);
                let mut slices = [io::IoSlice::new(a), io::IoSlice::new(b)];
                let mut slices = &mut slices[..];
                while !slices.is_empty() {
                    let written = stream.write_vectored(slices).await.unwrap();
                    io::IoSlice::advance_slices(&mut slices, written);
                }
            }
            stream.shutdown().await.unwrap();
        });
        let back = client.join().unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "the echo differs from what was sent");
    }
}
