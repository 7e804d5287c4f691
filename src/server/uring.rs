//! The io_uring backend, on tokio-uring: one ring and one current-thread runtime per I/O
//! thread, each serving the connections of its own `SO_REUSEPORT` socket. The only module
//! that names `tokio_uring`.
//!
//! Connections' reads and writes go through the ring (`stream::UringStream`, the
//! owned-buffer adapter to tokio's `AsyncRead`/`AsyncWrite`); everything above it — TLS,
//! HTTP, timeouts, the drain — is `conn`, as for epoll. Accepting waits for readiness on
//! the listening socket (tokio's listener) instead of an io_uring `accept`: tokio-uring
//! cannot cancel an operation it has submitted (a dropped op stays in the kernel until it
//! completes), so an `accept` in flight at the drain would hold the listening socket open,
//! and a connection it took afterwards would never be served nor closed. Readiness accept
//! costs a few syscalls per connection, none per request.

mod stream;

use std::future::Future;
use std::io;
use std::net::TcpListener as StdListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::background::{self, SpawnError};
use crate::server::accept::{self, Listener};
use crate::server::conn::{ConnSettings, Peer};

use stream::{MakeRead, ReadResult, UringStream};

/// Submission queue entries per ring. Every connection keeps one read in flight, but a
/// submitted op leaves the queue at the next `io_uring_enter`, so this bounds only the ops
/// queued between two submissions (one tick of the thread); the kernel sizes the
/// completion queue at twice this and never drops a completion (`IORING_FEAT_NODROP`).
const RING_ENTRIES: u32 = 1024;

/// Longest the probe waits for its no-op to complete.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why io_uring cannot serve here.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `io_uring_setup` (or the runtime around it) failed.
    #[error("cannot create an io_uring: {0}")]
    Setup(#[source] io::Error),
    /// The ring was created, but a no-op failed.
    #[error("a no-op on the ring failed: {0}")]
    NoOp(#[source] io::Error),
    /// The ring was created, but a no-op never completed: `io_uring_enter` is refused.
    #[error(
        "io_uring_setup worked, but a no-op did not complete within {}s (io_uring_enter refused, as a seccomp filter that allows only setup does)",
        PROBE_TIMEOUT.as_secs()
    )]
    Stalled,
    /// tokio-uring panicked while probing.
    #[error("tokio-uring panicked while probing the ring")]
    Panicked,
}

impl ProbeError {
    /// The OS error number behind the refusal, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Setup(e) | Self::NoOp(e) => e.raw_os_error(),
            Self::Stalled | Self::Panicked => None,
        }
    }
}

/// How every I/O thread's ring is set up: what the probe found this kernel takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    /// `IORING_SETUP_COOP_TASKRUN` (Linux >= 5.19): completions are run when the thread
    /// next enters the kernel rather than by interrupting it (an IPI each). Measured: +23 %
    /// HTTP/1.1 requests/s and -20 % CPU per request (BENCHMARKS.md, "What was tried").
    pub coop_taskrun: bool,
}

impl Ring {
    fn builder(self, entries: u32) -> tokio_uring::Builder {
        let mut setup = tokio_uring::uring_builder();
        if self.coop_taskrun {
            setup.setup_coop_taskrun();
        }
        let mut builder = tokio_uring::builder();
        builder.entries(entries).uring_builder(&setup);
        builder
    }
}

/// What a kernel answers `io_uring_setup` with a flag it does not know.
const EINVAL: i32 = 22;

/// Whether io_uring works here, and with which setup: creates a ring (`Runtime::new`,
/// which returns the error that `tokio_uring::start` would panic on) and completes one
/// no-op under a timeout, on the calling thread; with `COOP_TASKRUN` first, without it on
/// a kernel that refuses the flag. Call once, before any I/O thread starts.
pub fn probe() -> Result<Ring, ProbeError> {
    let coop = Ring { coop_taskrun: true };
    match probe_with(coop) {
        Err(ProbeError::Setup(e)) if e.raw_os_error() == Some(EINVAL) => {
            let plain = Ring {
                coop_taskrun: false,
            };
            probe_with(plain).map(|()| plain)
        }
        result => result.map(|()| coop),
    }
}

fn probe_with(ring: Ring) -> Result<(), ProbeError> {
    catch_unwind(AssertUnwindSafe(|| {
        let runtime = tokio_uring::Runtime::new(&ring.builder(8)).map_err(ProbeError::Setup)?;
        let no_op = async { tokio::time::timeout(PROBE_TIMEOUT, tokio_uring::no_op()).await };
        match runtime.block_on(no_op) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ProbeError::NoOp(e)),
            Err(_elapsed) => {
                // The no-op is still queued, and dropping the runtime would try to submit
                // it once more and panic on the refusal: keep this one ring (an fd and a
                // few pages) for the life of the process instead.
                std::mem::forget(runtime);
                Err(ProbeError::Stalled)
            }
        }
    }))
    .unwrap_or(Err(ProbeError::Panicked))
}

/// Starts I/O thread `name` on a ring of its own, serving `listener` until the drain
/// starts and all its connections have closed. A ring that cannot be set up fails the
/// start.
pub fn start_thread(
    name: String,
    listener: StdListener,
    settings: Arc<ConnSettings>,
    permits: Arc<Semaphore>,
    ring: Ring,
) -> Result<JoinHandle<()>, SpawnError> {
    background::spawn_with(
        name,
        move || tokio_uring::Runtime::new(&ring.builder(RING_ENTRIES)),
        move |runtime| {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(socket) => {
                        let listener = Readiness {
                            socket,
                            make_read: stream::read_op,
                        };
                        accept::serve_public(listener, settings, permits).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "I/O thread stopped: its listener failed")
                    }
                }
            });
        },
    )
}

/// The listening socket, accepted on readiness through tokio (see the module doc), each
/// connection handed to the ring.
struct Readiness<R> {
    socket: TcpListener,
    make_read: MakeRead<R>,
}

impl<R: Future<Output = ReadResult> + 'static> Listener for Readiness<R> {
    type Stream = UringStream<R>;

    async fn accept(&self) -> io::Result<(UringStream<R>, Peer)> {
        let (stream, peer) = self.socket.accept().await?;
        accept::tune(&stream);
        // Out of epoll (tokio registered it at accept) and blocking again: the ring waits
        // on a blocking socket by polling it in the kernel, where some kernels answer a
        // non-blocking one with EAGAIN. Two syscalls per connection, none per request.
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        let stream = tokio_uring::net::TcpStream::from_std(stream);
        Ok((UringStream::new(stream, self.make_read), Peer::Tcp(peer)))
    }
}
