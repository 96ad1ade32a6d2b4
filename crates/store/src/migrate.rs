//! Schema migrations: `streamspace migrate up|down|status` and the automatic run at server start.
//!
//! Each backend has its own numbered, reversible migrations (`migrations/postgres`,
//! `migrations/sqlite`), embedded in the binary. This module is the only migrator: nothing in
//! the schema is ever changed by hand.

/// Whether one migration is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    Applied,
    Pending,
}

/// One migration, as `migrate status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub state: MigrationState,
}

use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use crate::{Result, StoreError};

/// Name of the bookkeeping table (sqlx's default).
const TABLE: &str = "_sqlx_migrations";

/// Applies every pending migration; returns the versions applied, oldest first.
pub async fn up(url: &str) -> Result<Vec<i64>> {
    with_backend(url, |m, conn| Box::pin(apply(m, conn, None))).await
}

/// Applies pending migrations up to and including `version`; returns the versions applied.
pub async fn up_to(url: &str, version: i64) -> Result<Vec<i64>> {
    with_backend(url, move |m, conn| Box::pin(apply(m, conn, Some(version)))).await
}

/// Reverts the newest `steps` applied migrations; returns the versions reverted, newest first.
pub async fn down(url: &str, steps: u32) -> Result<Vec<i64>> {
    with_backend(url, move |m, conn| Box::pin(revert(m, conn, steps))).await
}

/// Every known migration and whether it is applied, oldest first.
pub async fn status(url: &str) -> Result<Vec<MigrationStatus>> {
    with_backend(url, |m, conn| Box::pin(list(m, conn))).await
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Runs `op` with the backend's migrator and one connection to the database `url` names.
async fn with_backend<T, F>(url: &str, op: F) -> Result<T>
where
    F: for<'c> FnOnce(&'static Migrator, &'c mut dyn MigrateConn) -> BoxFuture<'c, Result<T>>,
{
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            // Replicas starting at once against one database take turns: the whole operation,
            // from creating the bookkeeping table on, holds this session's advisory lock
            // (released when the connection closes).
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SELECT pg_advisory_lock($1)")
                        .bind(MIGRATION_LOCK_KEY)
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            })
            .connect(url)
            .await?;
        run_on(&pool, &crate::postgres::MIGRATOR, op).await
    } else if url.starts_with("sqlite:") {
        let options = crate::sqlite::connect_options(url)?;
        // SQLite has no advisory locks: processes sharing the file take turns on a lock file
        // beside it (none is needed for an in-memory database).
        let _turn = match options.get_filename().to_str() {
            Some(path) if !path.is_empty() && path != ":memory:" => {
                Some(lock_file(format!("{path}.migrate-lock")).await?)
            }
            _ => None,
        };
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        run_on(&pool, &crate::sqlite::MIGRATOR, op).await
    } else {
        Err(StoreError::UnsupportedUrl(crate::redact_url(url)))
    }
}

/// The advisory lock every migrating session of a PostgreSQL database takes first.
const MIGRATION_LOCK_KEY: i64 = 0x5354_524d_4d49_4752; // "STRMMIGR"

/// Waits for, and returns, an exclusive lock on `path` (created if missing); dropping the file
/// releases it. Waits on the blocking pool, so other tasks go on meanwhile.
async fn lock_file(path: String) -> Result<std::fs::File> {
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| StoreError::Migration(format!("waiting for the migration lock: {e}")))?;
    locked.map_err(|e| StoreError::Migration(format!("taking the migration lock: {e}")))
}

async fn run_on<DB, T, F>(pool: &Pool<DB>, migrator: &'static Migrator, op: F) -> Result<T>
where
    DB: Database,
    PoolConnection<DB>: MigrateConn,
    F: for<'c> FnOnce(&'static Migrator, &'c mut dyn MigrateConn) -> BoxFuture<'c, Result<T>>,
{
    let mut conn = pool.acquire().await?;
    let result = op(migrator, &mut conn).await;
    drop(conn);
    pool.close().await;
    result
}

/// One connection a migrator can drive, whatever the backend.
trait MigrateConn: Send {
    fn migrate(&mut self) -> &mut (dyn Migrate + Send);
    fn run<'c>(
        &'c mut self,
        migrator: &'static Migrator,
        target: Option<i64>,
    ) -> BoxFuture<'c, Result<(), MigrateError>>;
    fn undo<'c>(
        &'c mut self,
        migrator: &'static Migrator,
        target: i64,
    ) -> BoxFuture<'c, Result<(), MigrateError>>;
}

impl<DB> MigrateConn for PoolConnection<DB>
where
    DB: Database,
    DB::Connection: Migrate + Send,
    for<'c> &'c mut DB::Connection: sqlx::Acquire<'c, Database = DB>,
{
    fn migrate(&mut self) -> &mut (dyn Migrate + Send) {
        &mut **self
    }
    fn run<'c>(
        &'c mut self,
        migrator: &'static Migrator,
        target: Option<i64>,
    ) -> BoxFuture<'c, Result<(), MigrateError>> {
        Box::pin(migrator.run_direct(target, &mut **self, false))
    }
    fn undo<'c>(
        &'c mut self,
        migrator: &'static Migrator,
        target: i64,
    ) -> BoxFuture<'c, Result<(), MigrateError>> {
        Box::pin(migrator.undo(&mut **self, target))
    }
}

fn migration_error(e: MigrateError) -> StoreError {
    StoreError::Migration(e.to_string())
}

/// Applied versions, oldest first (creating the bookkeeping table if needed).
async fn applied(conn: &mut dyn MigrateConn) -> Result<Vec<i64>> {
    let m = conn.migrate();
    m.ensure_migrations_table(TABLE)
        .await
        .map_err(migration_error)?;
    let mut versions: Vec<i64> = m
        .list_applied_migrations(TABLE)
        .await
        .map_err(migration_error)?
        .into_iter()
        .map(|a| a.version)
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

async fn apply(
    migrator: &'static Migrator,
    conn: &mut dyn MigrateConn,
    target: Option<i64>,
) -> Result<Vec<i64>> {
    let before = applied(conn).await?;
    conn.run(migrator, target).await.map_err(migration_error)?;
    let after = applied(conn).await?;
    Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
}

async fn revert(
    migrator: &'static Migrator,
    conn: &mut dyn MigrateConn,
    steps: u32,
) -> Result<Vec<i64>> {
    let before = applied(conn).await?;
    let steps = usize::try_from(steps)
        .unwrap_or(usize::MAX)
        .min(before.len());
    // Undo reverts everything newer than the target: the newest version that stays applied.
    let target = before[..before.len() - steps].last().copied().unwrap_or(0);
    conn.undo(migrator, target).await.map_err(migration_error)?;
    let after = applied(conn).await?;
    Ok(before
        .into_iter()
        .rev()
        .filter(|v| !after.contains(v))
        .collect())
}

async fn list(
    migrator: &'static Migrator,
    conn: &mut dyn MigrateConn,
) -> Result<Vec<MigrationStatus>> {
    let done = applied(conn).await?;
    Ok(migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_string(),
            state: if done.contains(&m.version) {
                MigrationState::Applied
            } else {
                MigrationState::Pending
            },
        })
        .collect())
}
