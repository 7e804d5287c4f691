//! Taking up a renewed TLS certificate without a restart: on SIGHUP, and whenever a look at
//! the certificate and key files (every `tls.reload_interval_ms`) finds one changed. The
//! configuration is loaded again, every layer as at start (so a certificate from a secret
//! file, a path or a flag is found where it was found then), and the pair it names is put
//! in force for new handshakes; established connections keep theirs. A pair that cannot
//! be used (unreadable, not PEM, a key that is not the certificate's, a configuration that
//! no longer validates) is refused with an ERROR, and the certificate in force stays.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, LoadOptions, Loaded};
use crate::file_watch::{FileWatch, Look, LookNow, Looks};
use crate::server::tls::{self, CertSource, Certificates};

/// What the reload loop knows: where the configuration comes from, the certificate in
/// force, and the files it came from.
#[derive(Debug)]
pub struct TlsReload {
    options: LoadOptions,
    certificates: Arc<Certificates>,
    /// Whether the certificate in force was configured (not the development one).
    configured: bool,
    files: Vec<(PathBuf, FileWatch)>,
}

/// What one look did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing changed.
    Unchanged,
    /// A new certificate is in force.
    Reloaded,
    /// The new one was refused; the one in force stays.
    Refused(String),
}

impl TlsReload {
    /// The state after a start that loaded `loaded` (from `options`) and put the
    /// certificate `source` says in `certificates`.
    pub fn new(
        loaded: &Loaded,
        options: LoadOptions,
        certificates: Arc<Certificates>,
        source: &CertSource,
    ) -> Self {
        let mut reload = Self {
            options,
            certificates,
            configured: *source == CertSource::Configured,
            files: Vec::new(),
        };
        reload.watch(loaded);
        reload
    }

    /// Watches the files `loaded`'s certificate and key come from. A file watched already
    /// keeps its watch, which saw it at the look that led here: read again now, a change
    /// made since that look would become the baseline and never be taken up.
    fn watch(&mut self, loaded: &Loaded) {
        let t = &loaded.config.tls;
        let cert = match t.cert {
            Some(_) => loaded.file_of("tls.cert"),
            None => t.cert_path.clone(),
        };
        let key = match t.key {
            Some(_) => loaded.file_of("tls.key"),
            None => t.key_path.clone(),
        };
        let mut before = std::mem::take(&mut self.files);
        self.files = [cert, key]
            .into_iter()
            .flatten()
            .map(|path| match before.iter().position(|(p, _)| *p == path) {
                Some(i) => before.swap_remove(i),
                None => {
                    let mut watch = FileWatch::new();
                    watch.observe(std::fs::read(&path));
                    (path, watch)
                }
            })
            .collect();
    }

    /// One look: reloads when `forced` (SIGHUP) or when a watched file changed.
    pub fn look(&mut self, forced: bool) -> Outcome {
        let mut changed = forced;
        for (path, watch) in &mut self.files {
            match watch.observe(std::fs::read(&*path)) {
                Look::Same | Look::Changed { first: true, .. } => {}
                Look::Changed { .. } => changed = true,
                Look::Gone => {
                    return Outcome::Refused(format!("{} is gone", path.display()));
                }
                Look::Unreadable(e) => {
                    return Outcome::Refused(format!("cannot read {}: {e}", path.display()));
                }
            }
        }
        if !changed {
            return Outcome::Unchanged;
        }
        let loaded = match config::load(&self.options) {
            Ok(loaded) => loaded,
            Err(errors) => {
                return Outcome::Refused(format!("the configuration is invalid:\n{errors}"));
            }
        };
        match tls::certified_key(&loaded.config.tls.settings()) {
            Ok((key, CertSource::Configured)) => {
                self.certificates.replace(key);
                self.configured = true;
                self.watch(&loaded);
                Outcome::Reloaded
            }
            Ok((_, CertSource::SelfSignedDev)) if self.configured => Outcome::Refused(
                "no certificate is configured any more; keeping the one in force".to_owned(),
            ),
            // Still none configured: the development certificate stays as it is.
            Ok((_, CertSource::SelfSignedDev)) => Outcome::Unchanged,
            Err(e) => Outcome::Refused(format!(
                "{e}{}",
                std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default()
            )),
        }
    }
}

/// Runs [`TlsReload::look`] every `interval` and when `now` fires, on the calling runtime.
pub fn spawn(mut reload: TlsReload, interval: Duration, now: LookNow) {
    tokio::spawn(async move {
        let mut looks = Looks::new(interval, now);
        loop {
            let forced = looks.next().await;
            match reload.look(forced) {
                Outcome::Unchanged => {
                    if forced {
                        tracing::info!("SIGHUP: the TLS certificate is unchanged");
                    }
                }
                Outcome::Reloaded => tracing::info!(
                    fingerprint = reload
                        .certificates
                        .leaf()
                        .map(|c| tls::fingerprint(&c))
                        .unwrap_or_default(),
                    "TLS certificate reloaded: new handshakes get it"
                ),
                Outcome::Refused(why) => tracing::error!(
                    "the new TLS certificate cannot be used ({why}); the one in force stays"
                ),
            }
        }
    });
}
