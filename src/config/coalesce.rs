//! The `[coalesce]` section: sharing one inference among identical concurrent requests.

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

/// Request coalescing.
#[derive(Debug, Clone, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct CoalesceSection {
    /// Identical concurrent requests that miss the cache share one inference.
    pub enabled: bool,
}

impl Default for CoalesceSection {
    fn default() -> Self {
        Self { enabled: true }
    }
}
