//! Talking to PostgreSQL: connecting (plain or TLS), the batch write (COPY BINARY into a
//! staging table, then insert-select skipping rows already stored), and the reads and
//! deletes behind `/stats` and retention. SQL here is constant; every value is a bound
//! parameter or a COPY field, never text built from input.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::prediction_log::record::Record;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// `postgres://user@host:5432/db` or a key=value connection string.
    pub url: String,
    /// Password, when not in the URL.
    pub password: Option<String>,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Speak TLS, verifying the server against this PEM bundle.
    pub tls_ca: Option<PathBuf>,
}

/// Why talking to the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL does not parse.
    #[error("invalid database.url: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// The CA bundle could not be read.
    #[error("cannot read database.tls_ca_path {path}: {message}")]
    TlsCa { path: PathBuf, message: String },
    /// Postgres (or the network) refused.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No answer in time.
    #[error("postgres did not answer within {0:?}")]
    Timeout(Duration),
}

impl DbError {
    /// Whether trying again later may succeed. Data and constraint errors (SQLSTATE
    /// classes 22 and 23) will not: the rows themselves are refused.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Postgres(e) => e
                .code()
                .is_none_or(|c| !matches!(&c.code()[..2], "22" | "23")),
            Self::Timeout(_) => true,
            Self::Url(_) | Self::TlsCa { .. } => false,
        }
    }
}

/// Opens connections; each one's driver task runs on the runtime that calls
/// [`Connector::connect`].
#[derive(Clone)]
pub struct Connector {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    timeout: Duration,
}

impl Connector {
    /// Checks the URL and loads the CA bundle; connects to nothing.
    pub fn new(cfg: &DbSettings) -> Result<Self, DbError> {
        let mut config: tokio_postgres::Config = cfg.url.parse().map_err(DbError::Url)?;
        if let Some(password) = &cfg.password
            && config.get_password().is_none()
        {
            config.password(password);
        }
        if config.get_application_name().is_none() {
            config.application_name("infergate");
        }
        config.connect_timeout(cfg.connect_timeout);
        let tls = match &cfg.tls_ca {
            Some(path) => {
                config.ssl_mode(SslMode::Require);
                Some(MakeRustlsConnect::new(tls_config(path)?))
            }
            None => None,
        };
        Ok(Self {
            config,
            tls,
            timeout: cfg.connect_timeout,
        })
    }

    /// Connects (within the connect timeout) and spawns the connection's driver.
    pub async fn connect(&self) -> Result<Client, DbError> {
        let connecting = async {
            match &self.tls {
                Some(tls) => {
                    let (client, conn) = self.config.connect(tls.clone()).await?;
                    tokio::spawn(drive(conn));
                    Ok::<_, DbError>(client)
                }
                None => {
                    let (client, conn) = self.config.connect(NoTls).await?;
                    tokio::spawn(drive(conn));
                    Ok(client)
                }
            }
        };
        tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| DbError::Timeout(self.timeout))?
    }
}

async fn drive<F, E>(conn: F)
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "postgres connection ended");
    }
}

fn tls_config(path: &Path) -> Result<rustls::ClientConfig, DbError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let err = |message: String| DbError::TlsCa {
        path: path.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in the file".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Columns written, in COPY order, with their types.
pub const COLUMNS: &str = "prediction_id, created_at, request_id, model_name, model_version, \
     cache_status, input_hash, input_features, image_hash, prediction, top_class, confidence, \
     all_predictions, latency_us, client_addr, image_bytes, api_key, trace_id, shadow_version, \
     shadow_top1_agree, shadow_max_delta, model_load_us";
const TYPES: [Type; 22] = [
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::FLOAT4_ARRAY,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::FLOAT4,
    Type::JSONB,
    Type::INT8,
    Type::INET,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::FLOAT4,
    Type::INT8,
];

/// A record's fields in [`COLUMNS`] order, as COPY fields or statement parameters;
/// `created_at` is `r.created_at()`, kept alive by the caller.
pub fn params<'a>(r: &'a Record, created_at: &'a SystemTime) -> [&'a (dyn ToSql + Sync); 22] {
    [
        &r.prediction_id,
        created_at,
        &r.request_id,
        &r.model_name,
        &r.model_version,
        &r.cache_status,
        &r.input_hash,
        &r.input_features,
        &r.image_hash,
        &r.prediction,
        &r.top_class,
        &r.confidence,
        &r.all_predictions,
        &r.latency_us,
        &r.client_addr,
        &r.image_bytes,
        &r.api_key,
        &r.trace_id,
        &r.shadow_version,
        &r.shadow_top1_agree,
        &r.shadow_max_delta,
        &r.model_load_us,
    ]
}

/// Prepares a fresh connection for [`write_batch`]: a session-private staging table with
/// the log's column types, emptied at every commit.
pub async fn prepare_staging(client: &Client) -> Result<(), DbError> {
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS predictions_stage ON COMMIT DELETE ROWS AS \
             SELECT {COLUMNS} FROM predictions WITH NO DATA"
        ))
        .await?;
    Ok(())
}

/// Writes `records` in one transaction: COPY BINARY into the staging table, then
/// insert-select into `predictions`, skipping any `prediction_id` already there (a replay
/// of rows that were committed before). Returns the rows inserted.
pub async fn write_batch(client: &mut Client, records: &[Record]) -> Result<u64, DbError> {
    let tx = client.transaction().await?;
    let sink = tx
        .copy_in(&format!(
            "COPY predictions_stage ({COLUMNS}) FROM STDIN BINARY"
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &TYPES);
    pin_mut!(writer);
    for r in records {
        let created_at = r.created_at();
        writer.as_mut().write(&params(r, &created_at)).await?;
    }
    writer.finish().await?;
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO predictions ({COLUMNS}) \
                 SELECT DISTINCT ON (prediction_id) {COLUMNS} FROM predictions_stage \
                 ON CONFLICT (prediction_id) DO NOTHING"
            ),
            &[],
        )
        .await?;
    tx.commit().await?;
    Ok(inserted)
}

/// What `/stats` reads from the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbCounts {
    pub total_predictions: i64,
    pub predictions_last_hour: i64,
    pub average_confidence: f64,
}

/// Counts every logged prediction, the last hour's, and their mean confidence.
pub async fn counts(client: &Client) -> Result<DbCounts, DbError> {
    let row = client
        .query_one(
            "SELECT count(*), \
                    count(*) FILTER (WHERE created_at > now() - interval '1 hour'), \
                    COALESCE(avg(confidence), 0)::float8 \
             FROM predictions",
            &[],
        )
        .await?;
    Ok(DbCounts {
        total_predictions: row.get(0),
        predictions_last_hour: row.get(1),
        average_confidence: row.get(2),
    })
}

/// Deletes up to `limit` rows older than `max_age`; returns how many went.
pub async fn delete_older_than(
    client: &Client,
    max_age: Duration,
    limit: i64,
) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "DELETE FROM predictions WHERE id IN ( \
                 SELECT id FROM predictions \
                 WHERE created_at < now() - $1::float8 * interval '1 second' \
                 ORDER BY created_at LIMIT $2)",
            &[&max_age.as_secs_f64(), &limit],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `COLUMNS`, `TYPES` and `params` are kept in step by hand; a column added to one and
    /// not the others would only fail against a database.
    #[test]
    fn columns_types_and_params_agree() {
        let names: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(names.len(), TYPES.len());
        assert_eq!(
            &names[names.len() - 4..],
            [
                "shadow_version",
                "shadow_top1_agree",
                "shadow_max_delta",
                "model_load_us"
            ]
        );
        let created_at = SystemTime::UNIX_EPOCH;
        let record: Record = serde_json::from_value(serde_json::json!({
            "prediction_id": "01890000-0000-7000-8000-000000000000",
            "created_at_us": 0, "request_id": "r", "model_name": "m", "model_version": "1",
            "cache_status": "miss", "input_hash": "h", "input_features": null,
            "image_hash": null, "prediction": "p", "top_class": null, "confidence": 0.5,
            "all_predictions": [], "latency_us": 1, "client_addr": null,
        }))
        .unwrap();
        assert_eq!(params(&record, &created_at).len(), names.len());
    }
}
