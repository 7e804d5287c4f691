//! The `[ready]` section: which shared dependencies `/ready` requires.

use documented::{Documented, DocumentedFields};
use serde::{Deserialize, Serialize};

use crate::config::check::Checks;
use crate::state::Dependency;

/// What `/ready` requires besides warm models and no drain.
#[derive(Debug, Clone, Default, Serialize, Deserialize, Documented, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct ReadySection {
    /// Shared dependencies whose outage makes this replica unready (503): `"redis"`,
    /// `"database"`. Empty by default: a Redis or Postgres outage degrades every replica
    /// alike (L1 only, rows spooled), so taking them all out of rotation helps nobody.
    pub require: Vec<Dependency>,
}

impl ReadySection {
    /// Checks that what is required is configured: `redis` needs the L2
    /// (`redis_on`), `database` the prediction log (`database_on`).
    pub fn validate(&self, redis_on: bool, database_on: bool, checks: &mut Checks) {
        checks.check(
            !self.require.contains(&Dependency::Redis) || redis_on,
            "ready.require",
            "requires redis, but no redis.url is configured (or the cache is off)",
        );
        checks.check(
            !self.require.contains(&Dependency::Database) || database_on,
            "ready.require",
            "requires database, but no database.url is configured",
        );
    }
}
