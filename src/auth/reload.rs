//! Taking up a changed key file without a restart: on SIGHUP, and whenever a look at the
//! file (every `auth.reload_interval_ms`) finds its content changed. [`KeyFileWatch`]
//! decides from what a read returned (on `file_watch`); [`spawn`] runs the looks.
//!
//! A file that turns unreadable, invalid or missing keeps the keys in force: failing
//! closed (and saying so once, as an ERROR) beats opening the gateway, or refusing every
//! key, because of a half-written file.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Auth, KeySet};
use crate::file_watch::{FileWatch, Look, LookNow, Looks};
use crate::metrics::API_KEY_RELOADS_TOTAL;

/// What a look at the key file calls for.
#[derive(Debug)]
pub enum Change {
    /// Nothing new.
    Same,
    /// New keys to put in force; `first` for the first look, which only confirms what
    /// was loaded at start (or takes up a change made since).
    Keys { keys: KeySet, first: bool },
    /// The file is not usable; the keys in force stay.
    Refused(String),
}

/// The key file as last seen, to tell a change from a look at the same file.
#[derive(Debug, Default)]
pub struct KeyFileWatch {
    file: FileWatch,
}

impl KeyFileWatch {
    /// A watch that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `read` (the file's bytes, or why not) calls for. A problem is reported once,
    /// not at every look, until the file changes again.
    pub fn observe(&mut self, read: io::Result<Vec<u8>>) -> Change {
        match self.file.observe(read) {
            Look::Same => Change::Same,
            Look::Gone => Change::Refused("the file is gone; keeping the keys in force".to_owned()),
            Look::Unreadable(e) => Change::Refused(format!("cannot read it: {e}")),
            Look::Changed { bytes, first } => match std::str::from_utf8(&bytes) {
                Err(_) => Change::Refused("it is not UTF-8 text".to_owned()),
                Ok(text) => match KeySet::parse(text) {
                    Ok(keys) => Change::Keys { keys, first },
                    Err(e) => Change::Refused(e.to_string()),
                },
            },
        }
    }
}

/// Looks at `auth`'s key file every `interval` and when `now` fires, and puts a changed,
/// valid file's keys in force. Runs on the calling runtime until it ends; `false` (and
/// nothing runs) when `auth` has no file.
pub fn spawn(auth: Arc<Auth>, interval: Duration, now: LookNow) -> bool {
    let Some(path) = auth.path().map(ToOwned::to_owned) else {
        return false;
    };
    tokio::spawn(async move {
        let mut watch = KeyFileWatch::new();
        let mut looks = Looks::new(interval, now);
        loop {
            let forced = looks.next().await;
            // A key file is a few lines: read in place, not worth a blocking thread.
            let change = watch.observe(std::fs::read(&path));
            apply(&auth, change, forced, &path);
        }
    });
    true
}

fn apply(auth: &Auth, change: Change, forced: bool, path: &std::path::Path) {
    match change {
        Change::Same => {
            if forced {
                tracing::info!(path = %path.display(), "SIGHUP: the API key file is unchanged");
            }
        }
        Change::Keys { keys, first } => {
            let count = keys.len();
            let was_open = !auth.is_enforced();
            auth.replace(keys);
            if !first || was_open {
                metrics::counter!(API_KEY_RELOADS_TOTAL, "result" => "ok").increment(1);
                tracing::info!(path = %path.display(), keys = count, "API keys reloaded");
            }
        }
        Change::Refused(why) => {
            metrics::counter!(API_KEY_RELOADS_TOTAL, "result" => "error").increment(1);
            tracing::error!(
                path = %path.display(),
                "the API key file cannot be used ({why}); the keys in force stay"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ProtectedMode;
    use crate::auth::keys::{self, Scope, Scopes};

    fn line(name: &str, key: &str) -> String {
        keys::line(name, Scopes::of(&[Scope::Predict]), key) + "\n"
    }

    #[test]
    fn a_change_is_taken_once_and_a_problem_reported_once() {
        let mut w = KeyFileWatch::new();
        let a = line("a", "ka").into_bytes();
        assert!(matches!(
            w.observe(Ok(a.clone())),
            Change::Keys { first: true, .. }
        ));
        assert!(matches!(w.observe(Ok(a.clone())), Change::Same));
        assert!(matches!(
            w.observe(Ok(b"junk".to_vec())),
            Change::Refused(_)
        ));
        assert!(matches!(w.observe(Ok(b"junk".to_vec())), Change::Same));
        assert!(matches!(
            w.observe(Ok(a.clone())),
            Change::Keys { first: false, .. }
        ));
        let gone = || Err(io::Error::from(io::ErrorKind::NotFound));
        assert!(matches!(w.observe(gone()), Change::Refused(_)));
        assert!(matches!(w.observe(gone()), Change::Same));
        let denied = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(w.observe(denied()), Change::Refused(_)));
        assert!(matches!(w.observe(Ok(vec![0xff])), Change::Refused(_)));
    }

    #[test]
    fn a_file_missing_at_start_is_no_problem() {
        let mut w = KeyFileWatch::new();
        assert!(matches!(
            w.observe(Err(io::Error::from(io::ErrorKind::NotFound))),
            Change::Same
        ));
        assert!(matches!(
            w.observe(Ok(line("a", "ka").into_bytes())),
            Change::Keys { first: false, .. }
        ));
    }

    fn can(auth: &Auth, key: &str) -> bool {
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", http::HeaderValue::from_str(key).unwrap());
        let here = std::net::IpAddr::from([127, 0, 0, 1]);
        auth.authorize(&h, Some(Scope::Predict), here).is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_takes_up_rotations_and_keeps_keys_over_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api_keys");
        std::fs::write(&path, line("old", "k-old")).unwrap();
        let auth = Arc::new(Auth::from_file(&path, ProtectedMode::off()).unwrap());
        let interval = Duration::from_secs(1);
        let now = LookNow::new();
        assert!(spawn(Arc::clone(&auth), interval, now.clone()));
        let settle = || tokio::time::sleep(Duration::from_millis(1));
        settle().await;
        assert!(can(&auth, "k-old"));

        std::fs::write(&path, line("new", "k-new")).unwrap();
        settle().await;
        assert!(can(&auth, "k-old"), "not before the next look");
        tokio::time::sleep(interval).await;
        assert!(can(&auth, "k-new"));
        assert!(!can(&auth, "k-old"), "revoked by the rotation");

        std::fs::write(&path, "half a line").unwrap();
        tokio::time::sleep(interval).await;
        assert!(can(&auth, "k-new"), "a bad file keeps the keys in force");

        std::fs::write(&path, line("sighup", "k-sighup")).unwrap();
        now.fire();
        settle().await;
        assert!(
            can(&auth, "k-sighup"),
            "SIGHUP does not wait for the next look"
        );
    }
}
