//! The epoll backend: one current-thread tokio runtime per I/O thread, each accepting on its
//! own `SO_REUSEPORT` socket and serving its connections on that thread (`spawn_local`).

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::LocalSet;

use crate::server::accept::{self, Listener};
use crate::server::conn::ConnSettings;

/// Runs one I/O thread until the drain starts and all its connections have closed.
pub fn run_thread(
    listener: StdListener,
    settings: Arc<ConnSettings>,
    permits: Arc<Semaphore>,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = LocalSet::new();
    runtime.block_on(local.run_until(async move {
        let listener = Tokio(TcpListener::from_std(listener)?);
        accept::serve(listener, settings, permits).await
    }))
}

/// tokio's listener: readiness through epoll, the accepted socket non-blocking.
struct Tokio(TcpListener);

impl Listener for Tokio {
    type Stream = TcpStream;

    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        accept::tune(&stream);
        Ok((stream, peer))
    }
}
