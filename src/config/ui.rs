//! The `[ui]` section: the pages for people, the console at `/` and the API explorer at
//! `/docs`, and who may open them.

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::auth::Scope;
use crate::state::PagesSettings;

/// The pages for people: the console (`GET /`) and the interactive API docs (`GET
/// /docs`), served from the binary.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct UiSection {
    /// Serve the console at / and the API explorer at /docs (their files under /ui/, the
    /// console's numbers at /console/status). Off: those paths answer 404 as any unknown
    /// path does.
    pub enabled: bool,
    /// Who may open the pages: `open` (anyone; the numbers and models the console polls,
    /// and any prediction tried from it, still need an `admin` or a `predict` key when keys
    /// are on, which the page asks for) or `admin` (the pages themselves need an `admin`
    /// key or a client certificate: for a gateway whose pages only operators should see;
    /// compose.prod.yml sets it).
    pub scope: UiScope,
}

impl Default for UiSection {
    fn default() -> Self {
        Self {
            enabled: true,
            scope: UiScope::Open,
        }
    }
}

/// `ui.scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UiScope {
    /// Anyone may open the pages.
    Open,
    /// The pages need an `admin` key (or a client certificate).
    Admin,
}

impl UiSection {
    /// The router's settings.
    pub fn settings(&self) -> PagesSettings {
        PagesSettings {
            enabled: self.enabled,
            scope: match self.scope {
                UiScope::Open => None,
                UiScope::Admin => Some(Scope::Admin),
            },
        }
    }
}
