//! The SQLite backend: `streamspace up` and small single-replica installs.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{Result, StoreError};

/// Migrations of this backend, embedded in the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// [`crate::Store`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `url` (`sqlite:PATH` or `sqlite://PATH`), creating the file if missing. Does not
    /// migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(connect_options(url)?)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool (for migrations and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// WAL, foreign keys on, a busy timeout so concurrent writers wait instead of failing.
pub(crate) fn connect_options(url: &str) -> Result<SqliteConnectOptions> {
    if !url.starts_with("sqlite:") {
        return Err(StoreError::UnsupportedUrl(url.to_owned()));
    }
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5)))
}

crate::stub::stub_store!(SqliteStore, "sqlite");
