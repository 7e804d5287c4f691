//! Choosing the I/O backend: `server.io = "auto" | "uring" | "epoll"` resolved once, in
//! `main`'s thread, before any I/O thread starts.
//!
//! `auto` and `uring` probe io_uring ([`super::uring::probe`]); a refusal is explained by
//! its errno, with the fix. `auto` then serves on epoll after one WARN; `uring` does not
//! start (the caller exits 2).

use serde::{Deserialize, Serialize};

use crate::server::uring::{self, ProbeError, Ring};
use crate::state::IoKind;

/// Which I/O backend is asked for (`server.io`, `--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring where the kernel and the sandbox allow it (probed once at start), else
    /// epoll with one WARN saying why.
    Auto,
    /// io_uring (tokio-uring): one ring and runtime per I/O thread; refusing to start
    /// (exit 2) where io_uring is refused.
    Uring,
    /// Plain tokio (epoll): one current-thread runtime per I/O thread.
    Epoll,
}

/// The backend serving connections, once chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring through tokio-uring, its rings set up as the probe found.
    Uring(Ring),
    /// Plain tokio (epoll).
    Epoll,
}

impl Backend {
    /// Which backend this is, as the gateway reports it.
    pub fn kind(self) -> IoKind {
        match self {
            Self::Uring(_) => IoKind::Uring,
            Self::Epoll => IoKind::Epoll,
        }
    }

    /// The name `/stats`, `/ready`, the log and the metrics show.
    pub fn name(self) -> &'static str {
        self.kind().as_str()
    }
}

/// io_uring was asked for (`server.io = "uring"`) and is refused here.
#[derive(Debug, thiserror::Error)]
#[error("server.io = \"uring\", but {}", explain(.0))]
pub struct UringRefused(pub ProbeError);

/// Resolves `wanted` to the backend that will serve, probing io_uring unless `epoll` was
/// asked for. `auto` falls back to epoll with one WARN naming the reason and the fix.
pub fn choose(wanted: IoBackend) -> Result<Backend, UringRefused> {
    match wanted {
        IoBackend::Epoll => Ok(Backend::Epoll),
        IoBackend::Uring => uring::probe().map(Backend::Uring).map_err(UringRefused),
        IoBackend::Auto => match uring::probe() {
            Ok(ring) => Ok(Backend::Uring(ring)),
            Err(e) => {
                tracing::warn!(
                    errno = e.errno().unwrap_or(0),
                    "server.io = \"auto\": serving on epoll, because {}",
                    explain(&e)
                );
                Ok(Backend::Epoll)
            }
        },
    }
}

/// What refused io_uring, in words, and what to do about it.
fn explain(e: &ProbeError) -> String {
    let fix = "run with the shipped seccomp profile (config/seccomp/io_uring.json: Docker's \
               default plus the three io_uring syscalls; compose.uring.yml opts in), or set \
               server.io = \"epoll\"";
    match e.errno() {
        Some(EPERM) => match io_uring_disabled() {
            Some(level @ 1..) => format!(
                "io_uring_setup failed with EPERM (errno {EPERM}): kernel.io_uring_disabled is \
                 {level} on this host (1: only root or io_uring_group may use it, 2: nobody); \
                 set it to 0, or set server.io = \"epoll\""
            ),
            _ => format!(
                "io_uring_setup failed with EPERM (errno {EPERM}, {e}): a seccomp filter refuses \
                 io_uring (Docker >= 25's default profile, containerd 2's RuntimeDefault), or \
                 kernel.io_uring_disabled is set; {fix}"
            ),
        },
        Some(ENOSYS) => format!(
            "io_uring_setup failed with ENOSYS (errno {ENOSYS}): this kernel has no io_uring \
             (Linux < 5.1, or gVisor without io_uring enabled); server.io = \"epoll\" serves here"
        ),
        Some(ENOMEM) => format!(
            "io_uring_setup failed with ENOMEM (errno {ENOMEM}): kernels before 5.11 charge the \
             ring to RLIMIT_MEMLOCK, which is too low here (containers get 64 KiB); raise it \
             (--ulimit memlock=-1) or set server.io = \"epoll\""
        ),
        Some(errno) => format!("io_uring is unavailable (errno {errno}: {e}); {fix}"),
        None => format!("io_uring is unavailable ({e}); {fix}"),
    }
}

const EPERM: i32 = 1;
const ENOMEM: i32 = 12;
const ENOSYS: i32 = 38;

/// `kernel.io_uring_disabled` (Linux >= 6.6), when readable.
fn io_uring_disabled() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn every_refusal_names_its_errno_and_a_fix() {
        let eperm = explain(&ProbeError::Setup(io::Error::from_raw_os_error(EPERM)));
        assert!(eperm.contains("EPERM"), "{eperm}");
        assert!(eperm.contains("epoll"), "{eperm}");
        let enosys = explain(&ProbeError::Setup(io::Error::from_raw_os_error(ENOSYS)));
        assert!(
            enosys.contains("ENOSYS") && enosys.contains("gVisor"),
            "{enosys}"
        );
        let enomem = explain(&ProbeError::Setup(io::Error::from_raw_os_error(ENOMEM)));
        assert!(enomem.contains("RLIMIT_MEMLOCK"), "{enomem}");
        let stalled = explain(&ProbeError::Stalled);
        assert!(stalled.contains("seccomp"), "{stalled}");
    }

    #[test]
    fn epoll_is_chosen_without_a_probe() {
        assert_eq!(choose(IoBackend::Epoll).unwrap(), Backend::Epoll);
    }
}
