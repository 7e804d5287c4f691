//! Background threads: a named OS thread running one task on a current-thread tokio
//! runtime of its own (the batcher, Redis, the prediction log, the repository, the shadow,
//! the check socket, the redirect listener, the epoll I/O threads).
//!
//! One error policy for all of them: the runtime is built on the caller's thread before the
//! thread starts, so a runtime (or a thread) that cannot start fails the caller's start,
//! loudly, instead of a thread that logs and serves nothing.

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::task::LocalSet;

/// Why a background thread did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Its tokio runtime could not be built.
    #[error("cannot build the runtime of thread {name}")]
    Runtime {
        name: String,
        #[source]
        source: io::Error,
    },
    /// The OS refused the thread.
    #[error("cannot spawn thread {name}")]
    Thread {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// A started background thread.
#[derive(Debug)]
pub struct Background<T> {
    /// The thread; joining it returns the task's output once the task has finished.
    pub thread: JoinHandle<T>,
    /// Its runtime, for other threads to spawn work onto (valid while the task runs).
    pub runtime: Handle,
}

/// Starts thread `name` running the future `task()` makes, inside a [`LocalSet`] (so the
/// task may `spawn_local`) on a current-thread runtime with I/O and time enabled. The
/// future is made on the new thread, so it need not be `Send`. Returns once the thread is
/// running; the thread ends when the task does.
pub fn spawn<F, Fut>(
    name: impl Into<String>,
    task: F,
) -> Result<Background<Fut::Output>, SpawnError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let name = name.into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SpawnError::Runtime {
            name: name.clone(),
            source,
        })?;
    let handle = runtime.handle().clone();
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || LocalSet::new().block_on(&runtime, task()))
        .map_err(|source| SpawnError::Thread { name, source })?;
    Ok(Background {
        thread,
        runtime: handle,
    })
}

/// Starts thread `name` for a runtime that cannot move between threads (io_uring's): the
/// thread builds it with `build`, and a failure to build fails this call, as in [`spawn`];
/// then the thread runs `run` with it. Returns once the runtime is built.
pub fn spawn_with<R, B, F>(
    name: impl Into<String>,
    build: B,
    run: F,
) -> Result<JoinHandle<()>, SpawnError>
where
    B: FnOnce() -> io::Result<R> + Send + 'static,
    F: FnOnce(R) + Send + 'static,
{
    let name = name.into();
    let (built_tx, built) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || match build() {
            Ok(runtime) => {
                let _ = built_tx.send(Ok(()));
                run(runtime);
            }
            Err(e) => {
                let _ = built_tx.send(Err(e));
            }
        })
        .map_err(|source| SpawnError::Thread {
            name: name.clone(),
            source,
        })?;
    match built.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(source)) => Err(SpawnError::Runtime { name, source }),
        // The thread ended before it said: `build` panicked.
        Err(_) => Err(SpawnError::Runtime {
            name,
            source: io::Error::other("the runtime's builder panicked"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_runs_on_its_named_thread_and_may_spawn_local() {
        let started = spawn("infergate-test", || async {
            let name = std::thread::current().name().map(str::to_owned);
            let local = tokio::task::spawn_local(async { 21 * 2 }).await.ok();
            (name, local)
        })
        .expect("a thread starts");
        let (name, local) = started.thread.join().expect("the task finishes");
        assert_eq!(name.as_deref(), Some("infergate-test"));
        assert_eq!(local, Some(42));
    }

    #[test]
    fn a_runtime_that_cannot_be_built_fails_the_start() {
        let refused = spawn_with(
            "infergate-test",
            || Err::<(), _>(io::Error::other("no ring")),
            |()| unreachable!("never runs without its runtime"),
        );
        assert!(
            matches!(refused, Err(SpawnError::Runtime { ref name, .. }) if name == "infergate-test")
        );
        let started = spawn_with("infergate-test", || Ok(7), |n| assert_eq!(n, 7));
        started.expect("built").join().expect("ran");
    }

    #[test]
    fn other_threads_spawn_onto_its_runtime() {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let started = spawn("infergate-test", move || async move {
            let _ = stop_rx.await;
        })
        .expect("a thread starts");
        let answer = std::thread::scope(|_| {
            let (tx, rx) = std::sync::mpsc::channel();
            started.runtime.spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
            rx.recv().ok().flatten()
        });
        assert_eq!(answer.as_deref(), Some("infergate-test"));
        let _ = stop_tx.send(());
        started.thread.join().expect("the task finishes");
    }
}
