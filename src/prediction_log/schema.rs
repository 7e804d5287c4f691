//! The schema, owned by the binary: embedded, numbered migrations, each applied once in
//! its own transaction, under a session advisory lock so replicas starting together take
//! turns (the second finds the work done).

use tokio_postgres::Client;

/// Key of the advisory lock held while migrating ("infergate" in ASCII, truncated).
const LOCK_KEY: i64 = 0x696e_6665_7267_6174;

/// A migration: its number, its name, its SQL.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Never edit a shipped one; add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "predictions",
        sql: include_str!("../../migrations/0001_predictions.sql"),
    },
    Migration {
        version: 2,
        name: "image_bytes",
        sql: include_str!("../../migrations/0002_image_bytes.sql"),
    },
    Migration {
        version: 3,
        name: "api_key",
        sql: include_str!("../../migrations/0003_api_key.sql"),
    },
    Migration {
        version: 4,
        name: "trace_id",
        sql: include_str!("../../migrations/0004_trace_id.sql"),
    },
    Migration {
        version: 5,
        name: "shadow",
        sql: include_str!("../../migrations/0005_shadow.sql"),
    },
    Migration {
        version: 6,
        name: "regression",
        sql: include_str!("../../migrations/0006_regression.sql"),
    },
    Migration {
        version: 7,
        name: "model_load",
        sql: include_str!("../../migrations/0007_model_load.sql"),
    },
];

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i32>,
    /// The schema version afterwards.
    pub current: i32,
}

/// Applies the migrations not yet applied. Idempotent; safe to run from several
/// processes at once.
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply(client).await;
    // Released also when the connection ends, so a failed unlock is harmless.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply(client: &mut Client) -> Result<MigrationReport, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS infergate_schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let done: Vec<i32> = client
        .query("SELECT version FROM infergate_schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO infergate_schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied.push(m.version);
    }
    let current = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    Ok(MigrationReport { applied, current })
}
