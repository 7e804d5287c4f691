//! The open-file limit (`RLIMIT_NOFILE`): every connection is a file descriptor, so the
//! soft limit caps connections whatever `server.max_connections` says. At start the soft
//! limit is raised to the hard one (as nginx's `worker_rlimit_nofile` would be set), and
//! the result compared with what `server.max_connections` needs. At the limit itself the
//! accept loop closes idle keep-alive connections to make room (`accept`, `idle`).

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors the gateway holds besides its connections, allowed for in
/// [`FdLimit::covers`]: listeners and rings per I/O thread, the check socket and the
/// redirect listener, Redis and PostgreSQL pools, the spool, model files while they load,
/// the log, jemalloc and the runtime's own. A round allowance, not a count.
pub const OWN_FDS: u64 = 256;

/// Where `/proc` says how high any process's limit may go when the hard limit is
/// "unlimited" (setting the soft limit to `RLIM_INFINITY` fails on Linux).
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// The open-file limit as found, and as left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit in force now.
    pub soft: u64,
    /// The hard limit: the most the soft one can be raised to.
    pub hard: u64,
    /// The soft limit before [`raise`] raised it; `None` when it was not raised.
    pub raised_from: Option<u64>,
}

/// The limit could not be read, or (`server.strict_fd_limit`) cannot hold the
/// connections configured.
#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    /// `getrlimit` failed.
    #[error("cannot read the open-file limit (RLIMIT_NOFILE): {0}")]
    Read(#[from] nix::Error),
    /// The limit, raised as far as it goes, is below what the connections need.
    #[error(
        "the open-file limit ({soft}) cannot hold server.max_connections ({max_connections}) \
         and the gateway's own descriptors ({OWN_FDS}): raise it (ulimit -n, systemd's \
         LimitNOFILE, Compose's ulimits.nofile) to {needed} or more, or lower \
         server.max_connections; server.strict_fd_limit refuses to start below it"
    )]
    TooLow {
        soft: u64,
        max_connections: usize,
        needed: u64,
    },
}

impl FdLimit {
    /// Whether the soft limit leaves room for `max_connections` connections and the
    /// gateway's own descriptors.
    pub fn covers(&self, max_connections: usize) -> bool {
        self.soft >= self.needed(max_connections)
    }

    /// Descriptors `max_connections` connections need, the gateway's own included.
    pub fn needed(&self, max_connections: usize) -> u64 {
        max_connections as u64 + OWN_FDS
    }
}

/// The limit in force, unchanged.
pub fn current() -> Result<FdLimit, FdLimitError> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(FdLimit {
        soft,
        hard,
        raised_from: None,
    })
}

/// The soft limit [`raise`] would set: the hard one, or where the hard one is unlimited,
/// the kernel's `fs.nr_open`.
pub fn attainable(limit: &FdLimit) -> u64 {
    if limit.hard == nix::libc::RLIM_INFINITY {
        std::fs::read_to_string(NR_OPEN)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(limit.soft)
    } else {
        limit.hard
    }
}

/// Raises the soft limit as far as it goes ([`attainable`]). A refusal leaves the limit as
/// it was: the gateway serves within it.
pub fn raise() -> Result<FdLimit, FdLimitError> {
    let found = current()?;
    let target = attainable(&found);
    if target <= found.soft || setrlimit(Resource::RLIMIT_NOFILE, target, found.hard).is_err() {
        return Ok(found);
    }
    Ok(FdLimit {
        soft: target,
        raised_from: Some(found.soft),
        ..found
    })
}

/// At start: raises the limit and says so (one INFO line with the value), then compares
/// it with what `max_connections` needs: below it, one WARN with both numbers, or with
/// `strict` an error (the gateway refuses to start).
pub fn prepare(max_connections: usize, strict: bool) -> Result<FdLimit, FdLimitError> {
    let limit = raise()?;
    match limit.raised_from {
        Some(from) => tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            from,
            "open-file limit raised to {}",
            limit.soft
        ),
        None => tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            "open-file limit {}",
            limit.soft
        ),
    }
    if limit.covers(max_connections) {
        return Ok(limit);
    }
    let needed = limit.needed(max_connections);
    if strict {
        return Err(FdLimitError::TooLow {
            soft: limit.soft,
            max_connections,
            needed,
        });
    }
    tracing::warn!(
        limit = limit.soft,
        max_connections,
        needed,
        "the open-file limit ({}) is below what server.max_connections needs ({needed}): \
         near it, idle keep-alive connections are closed to make room for new ones; raise \
         it (ulimit -n, LimitNOFILE, ulimits.nofile) or lower server.max_connections",
        limit.soft
    );
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_counts_against_the_limit() {
        let limit = FdLimit {
            soft: 1024,
            hard: 4096,
            raised_from: None,
        };
        assert!(limit.covers(768));
        assert!(!limit.covers(769));
        assert_eq!(limit.needed(10_000), 10_256);
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        // The test process's own limit: raised (or already) to its hard limit.
        let raised = raise().unwrap();
        let now = current().unwrap();
        assert_eq!(now.soft, raised.soft);
        assert!(now.soft <= now.hard);
        if now.hard != nix::libc::RLIM_INFINITY {
            assert_eq!(now.soft, now.hard);
        }
    }
}
