//! Who may call what, as configured: the start-up line that says it (a WARN without a key
//! file), and the same in one sentence for `check-config` and `print-config`. The route
//! table decides which routes are admin ([`crate::http::labels_by_scope`]), so a new admin
//! route is named here, and protected, without anyone listing it.

use std::path::Path;

use crate::auth::Auth;
use crate::config::Config;

/// Where callers stand, as the configuration and the key file make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A key file: scopes decide.
    Keys,
    /// No key file, protected mode on: the admin routes only from this machine.
    Protected,
    /// No key file, protected mode off: everything open.
    Open,
}

impl Access {
    /// As `auth` has it now.
    pub fn of(auth: &Auth) -> Self {
        Self::from_parts(auth.is_enforced(), auth.protected().is_on())
    }

    /// As `config` would start: whether its key file exists decides.
    pub fn configured(config: &Config) -> Self {
        let keys = config.auth.keys_path(&config.secrets.dir).exists();
        Self::from_parts(keys, config.auth.protected_mode)
    }

    fn from_parts(keys: bool, protected: bool) -> Self {
        match (keys, protected) {
            (true, _) => Self::Keys,
            (false, true) => Self::Protected,
            (false, false) => Self::Open,
        }
    }
}

/// The routes each way, as labels joined by spaces: open to anyone, and admin.
fn labels(config: &Config) -> (String, String) {
    let (open, admin) = crate::http::labels_by_scope(config.ui.settings());
    (open.join(" "), admin.join(" "))
}

/// One sentence: which routes answer whom, and why (`check-config`, `print-config`).
pub fn summary(config: &Config) -> String {
    let path = config.auth.keys_path(&config.secrets.dir);
    let (_, admin) = labels(config);
    match Access::configured(config) {
        Access::Keys => format!(
            "API keys from {}: scopes decide (/predict needs predict, the admin routes {admin} \
             need admin)",
            path.display()
        ),
        Access::Protected => {
            let mut local = String::from("loopback, the check socket");
            for net in &config.auth.local_networks {
                local.push_str(", ");
                local.push_str(&String::from(*net));
            }
            format!(
                "no API key file at {}: protected mode, the admin routes {admin} answer only \
                 to {local}; the rest to anyone",
                path.display()
            )
        }
        Access::Open => format!(
            "no API key file at {} and auth.protected_mode = false: every route, the admin \
             routes {admin} too, is open to anyone",
            path.display()
        ),
    }
}

/// Says at start who may call what: an INFO with keys, else one WARN naming the routes open
/// to anyone and those kept to this machine (or, protected mode off, open too).
pub fn announce(config: &Config, auth: &Auth, path: &Path) {
    let (open, admin) = labels(config);
    let protected = auth.protected();
    match Access::of(auth) {
        Access::Keys => tracing::info!(
            path = %path.display(),
            keys = auth.keys().map_or(0, |k| k.len()),
            "API keys on: /predict needs a predict key, /metrics and /stats an admin key"
        ),
        Access::Protected => {
            let local: Vec<String> = protected
                .local_networks()
                .iter()
                .map(ToString::to_string)
                .collect();
            tracing::warn!(
                path = %path.display(),
                open_to_anyone = %open,
                admin_only_from_here = %admin,
                local_networks = %local.join(" "),
                "no API key file: protected mode, the admin routes answer only to loopback \
                 clients, auth.local_networks and the check socket, the rest to anyone who \
                 can connect; add keys with `infergate hash-key` (auth.keys_path, or the \
                 api_keys secret), or set auth.protected_mode = false to open the admin \
                 routes too"
            );
        }
        Access::Open => tracing::warn!(
            path = %path.display(),
            open_to_anyone = %format!("{open} {admin}"),
            "no API key file and auth.protected_mode = false: every route, the admin ones \
             ({admin}) too, is open to anyone who can connect; add keys with `infergate \
             hash-key` (auth.keys_path, or the api_keys secret)"
        ),
    }
}
