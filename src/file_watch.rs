//! Telling a changed file from a look at the same one: the pure state behind the loops that
//! take up a rotated API key file or TLS certificate without a restart. A look reads the
//! whole file (these are a few KiB) and compares bytes, so every way of replacing one — in
//! place, by rename, by a Kubernetes or Docker secret's symlink swap — is a change, and
//! touching it without changing it is none.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior};

/// When a watch loop looks: every `interval`, and whenever its [`LookNow`] fires.
#[derive(Debug)]
pub struct Looks {
    ticks: Interval,
    now: LookNow,
}

impl Looks {
    /// The first look is at once. Needs a tokio runtime.
    pub fn new(interval: Duration, now: LookNow) -> Self {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { ticks, now }
    }

    /// Waits for the next look; `true` when it was asked for (SIGHUP).
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.ticks.tick() => false,
            () = self.now.fired() => true,
        }
    }
}

/// Asks one watch loop for a look now (SIGHUP), whatever its interval.
#[derive(Debug, Clone, Default)]
pub struct LookNow {
    now: Arc<Notify>,
}

impl LookNow {
    /// A trigger no loop listens to yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The loop looks at once (or as soon as it finishes the look it is in).
    pub fn fire(&self) {
        self.now.notify_one();
    }

    /// Resolves at the next [`LookNow::fire`].
    pub async fn fired(&self) {
        self.now.notified().await;
    }
}

/// What the last look found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Nothing,
    Content(Vec<u8>),
    Missing,
    Unreadable(String),
}

/// What a look found, compared with the one before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// As before (also: missing at the first look).
    Same,
    /// New content; `first` for the first look, which only confirms what was loaded at
    /// start (or takes up a change made since).
    Changed { bytes: Vec<u8>, first: bool },
    /// The file is gone.
    Gone,
    /// The file cannot be read.
    Unreadable(String),
}

/// One file's content as last seen.
#[derive(Debug)]
pub struct FileWatch {
    seen: Seen,
}

impl Default for FileWatch {
    fn default() -> Self {
        Self::new()
    }
}

impl FileWatch {
    /// A watch that has seen nothing yet.
    pub fn new() -> Self {
        Self {
            seen: Seen::Nothing,
        }
    }

    /// What `read` (the file's bytes, or why not) says. A problem is reported once, not at
    /// every look, until the file changes again.
    pub fn observe(&mut self, read: io::Result<Vec<u8>>) -> Look {
        let first = self.seen == Seen::Nothing;
        let seen = match read {
            Ok(bytes) => Seen::Content(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Seen::Missing,
            Err(e) => Seen::Unreadable(e.to_string()),
        };
        if seen == self.seen {
            return Look::Same;
        }
        self.seen = seen;
        match &self.seen {
            Seen::Nothing => Look::Same,
            Seen::Missing if first => Look::Same,
            Seen::Missing => Look::Gone,
            Seen::Unreadable(e) => Look::Unreadable(e.clone()),
            Seen::Content(bytes) => Look::Changed {
                bytes: bytes.clone(),
                first,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_once_and_a_problem_reported_once() {
        let mut w = FileWatch::new();
        let a = b"a".to_vec();
        assert_eq!(
            w.observe(Ok(a.clone())),
            Look::Changed {
                bytes: a.clone(),
                first: true
            }
        );
        assert_eq!(w.observe(Ok(a.clone())), Look::Same);
        assert!(matches!(
            w.observe(Ok(b"b".to_vec())),
            Look::Changed { first: false, .. }
        ));
        let gone = || Err(io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(w.observe(gone()), Look::Gone);
        assert_eq!(w.observe(gone()), Look::Same);
        let denied = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(w.observe(denied()), Look::Unreadable(_)));
        assert_eq!(w.observe(denied()), Look::Same);
        assert!(matches!(
            w.observe(Ok(a)),
            Look::Changed { first: false, .. }
        ));
    }

    #[test]
    fn missing_at_the_first_look_is_no_change() {
        let mut w = FileWatch::new();
        assert_eq!(
            w.observe(Err(io::Error::from(io::ErrorKind::NotFound))),
            Look::Same
        );
        assert!(matches!(
            w.observe(Ok(b"x".to_vec())),
            Look::Changed { first: false, .. }
        ));
    }
}
