//! The epoll backend: one current-thread tokio runtime per I/O thread, each accepting on its
//! own `SO_REUSEPORT` socket and serving its connections on that thread (`spawn_local`).

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::LocalSet;

use crate::metrics::CONNECTIONS_REJECTED_TOTAL;
use crate::server::conn::{self, ConnSettings, Peer};

/// Runs one I/O thread until the drain starts and all its connections have closed.
pub fn run_thread(
    listener: StdListener,
    settings: Arc<ConnSettings>,
    permits: Arc<Semaphore>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = LocalSet::new();
    runtime.block_on(local.run_until(accept_loop(listener, settings, permits)))?;
    // Accepting stopped: let this thread's connections finish (the control thread enforces
    // the drain deadline).
    runtime.block_on(local);
    Ok(())
}

async fn accept_loop(
    listener: StdListener,
    settings: Arc<ConnSettings>,
    permits: Arc<Semaphore>,
) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let mut drain = settings.gateway.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = drain.wait_for(|d| *d) => return Ok(()),
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    // At the connection cap: close at once rather than queue in the backlog.
                    metrics::counter!(CONNECTIONS_REJECTED_TOTAL).increment(1);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let settings = Arc::clone(&settings);
                tokio::task::spawn_local(async move {
                    conn::serve(stream, Peer::Tcp(peer), settings).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Usually EMFILE/ENFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
