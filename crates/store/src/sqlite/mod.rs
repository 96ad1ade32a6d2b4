//! The SQLite backend: `streamspace up` and small single-replica installs.
//!
//! Every transaction that writes starts with `BEGIN IMMEDIATE`: SQLite runs one writer at a
//! time, so taking the write lock up front makes a read-then-write transaction (placing a
//! session, claiming a delivery) atomic, and a second writer waits on the busy timeout instead
//! of failing when it would have had to upgrade a read lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use streamspace_proto::api::{Command, Session};
use uuid::Uuid;

use crate::rows::DbUuid;
use crate::sql::{self, SQLITE_STATEMENTS};
use crate::{AuditEntry, NewSession, Result, StoreError};

/// Migrations of this backend, embedded in the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// [`crate::Store`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// One agent after another: SQLite answers in the process, with no round trip to save.
    async fn live_sessions_batch(&self, agent_ids: &[String]) -> Result<Vec<Vec<Session>>> {
        let mut all = Vec::with_capacity(agent_ids.len());
        for agent_id in agent_ids {
            all.push(crate::Store::list_live_sessions(self, agent_id).await?);
        }
        Ok(all)
    }

    /// One agent after another, as [`Self::live_sessions_batch`].
    async fn unfinished_batch(
        &self,
        agent_ids: &[String],
        limit: i64,
    ) -> Result<Vec<Vec<Command>>> {
        let mut all = Vec::with_capacity(agent_ids.len());
        for agent_id in agent_ids {
            // With every unfinished command included, the timing arguments select nothing more.
            all.push(
                crate::Store::deliverable_commands(self, agent_id, 0.0, 0, true, limit).await?,
            );
        }
        Ok(all)
    }

    /// One write transaction for the whole batch, each heartbeat checking its key first.
    async fn heartbeat_batch(
        &self,
        beats: &[crate::AgentHeartbeat],
    ) -> Result<Vec<crate::HeartbeatOutcome>> {
        let mut tx = self.write_tx().await?;
        let mut outcomes = Vec::with_capacity(beats.len());
        for beat in beats {
            // The validity alone, as PostgreSQL's statement checks it: no row to decode.
            let valid = sqlx::query(SQLITE_STATEMENTS.key_valid)
                .bind(crate::rows::DbUuid(beat.key_id))
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !valid {
                outcomes.push(crate::HeartbeatOutcome::KeyGone);
                continue;
            }
            let done = sqlx::query(SQLITE_STATEMENTS.agent_heartbeat)
                .bind(&beat.agent_id)
                .bind(beat.epoch)
                .bind(beat.max_sessions.max(0))
                .bind(&beat.replica_id)
                .execute(&mut *tx)
                .await?;
            outcomes.push(if done.rows_affected() > 0 {
                crate::HeartbeatOutcome::Recorded
            } else {
                crate::HeartbeatOutcome::Replaced
            });
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// One lookup after another: SQLite answers in the process, with no round trip to save.
    async fn find_keys_batch(&self, hashes: &[String]) -> Result<Vec<Option<crate::ApiKeyRecord>>> {
        let mut found = Vec::with_capacity(hashes.len());
        for hash in hashes {
            found.push(crate::Store::find_api_key(self, hash).await?);
        }
        Ok(found)
    }

    /// One write transaction for the whole batch: SQLite's cost is the commit, not the
    /// statement.
    async fn register_batch(&self, regs: &[crate::AgentRegistration]) -> Result<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        let mut epochs = Vec::with_capacity(regs.len());
        for reg in regs {
            epochs.push(Self::register_one(&mut tx, reg).await?);
        }
        tx.commit().await?;
        Ok(epochs)
    }

    /// SQLite inserts one at a time (its cost is the commit, and each answer is its own).
    async fn insert_commands_batch(
        &self,
        _commands: &[crate::NewCommand],
    ) -> Result<Option<Vec<Command>>> {
        Ok(None)
    }

    /// One agent after another: one writer is all SQLite has.
    async fn claim_due_batch(
        &self,
        agent_ids: &[String],
        ack_timeout_secs: f64,
        max_attempts: i32,
        limit: i64,
    ) -> Result<Vec<Vec<Command>>> {
        let mut claimed = Vec::with_capacity(agent_ids.len());
        let mut seen = std::collections::HashSet::new();
        for agent_id in agent_ids {
            if !seen.insert(agent_id.as_str()) {
                claimed.push(Vec::new());
                continue;
            }
            claimed.push(
                self.claim_due(agent_id, ack_timeout_secs, max_attempts, limit)
                    .await?,
            );
        }
        Ok(claimed)
    }

    /// Every report takes the one-report path (see [`Self::finish_sessionless`]).
    async fn finish_sessionless_batch(
        &self,
        reports: &[crate::CommandReport],
    ) -> Result<Vec<Option<Command>>> {
        Ok(vec![None; reports.len()])
    }

    /// Opens `url` (`sqlite:PATH` or `sqlite://PATH`), creating the file if missing. Does not
    /// migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // The file cannot go away under an open connection; a ping per statement buys
            // nothing.
            .test_before_acquire(false)
            .connect_with(connect_options(url)?)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool (for migrations and tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn place_session(
        &self,
        new: &NewSession,
        audit: &AuditEntry,
    ) -> Result<(Session, Command)> {
        let mut tx = self.write_tx().await?;
        Self::check_quota(&mut tx, new).await?;
        let home = Self::home_target(&mut tx, new).await?;
        let chosen: Option<String> = sqlx::query_scalar(sql::AGENT_CHOOSE)
            .bind(new.platform.as_deref())
            .bind(home.pinned.as_deref())
            .bind(home.needs_user_homes)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(agent_id) = chosen else {
            return Err(Self::no_agent(&mut tx, &home).await?);
        };
        let placed = Self::insert_session(&mut tx, new, &agent_id).await?;
        let audit = audit.with_detail("agent_id", agent_id.into());
        Self::insert_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(placed)
    }

    /// Claims in one write transaction and reads the rows back, since `RETURNING` would miss
    /// the trigger's `updated_at`.
    async fn claim_due(
        &self,
        agent_id: &str,
        ack_timeout_secs: f64,
        max_attempts: i32,
        limit: i64,
    ) -> Result<Vec<Command>> {
        let mut tx = self.write_tx().await?;
        let rows =
            sqlx::query_as::<_, crate::rows::CommandRow>(SQLITE_STATEMENTS.command_claim_due)
                .bind(agent_id)
                .bind(ack_timeout_secs)
                .bind(max_attempts)
                .bind(limit.max(0))
                .fetch_all(&mut *tx)
                .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let stale: Command = row.try_into()?;
            let fresh = sqlx::query_as::<_, crate::rows::CommandRow>(sql::COMMAND_BY_ID)
                .bind(stale.id)
                .fetch_one(&mut *tx)
                .await?;
            claimed.push(Command::try_from(fresh)?);
        }
        tx.commit().await?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// SQLite finishes every command in [`Self::finish_command_tx`]: its single writer gains
    /// nothing from a shorter path, and `RETURNING` would miss the trigger's `updated_at`.
    async fn finish_sessionless(
        &self,
        _agent_id: &str,
        _command_id: Uuid,
        _outcome: &crate::CommandOutcome,
    ) -> Result<Option<Command>> {
        Ok(None)
    }

    async fn claim(&self, command_id: Uuid, expected_attempts: i32) -> Result<Option<Command>> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(SQLITE_STATEMENTS.command_claim)
            .bind(DbUuid(command_id))
            .bind(expected_attempts)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        // Read back rather than RETURNING: RETURNING would miss the trigger's updated_at.
        let command = sqlx::query_as::<_, crate::rows::CommandRow>(sql::COMMAND_GET)
            .bind(DbUuid(command_id))
            .fetch_one(&mut *tx)
            .await?
            .try_into()?;
        tx.commit().await?;
        Ok(Some(command))
    }
}

/// WAL, foreign keys on, a busy timeout so concurrent writers wait instead of failing.
pub(crate) fn connect_options(url: &str) -> Result<SqliteConnectOptions> {
    if !url.starts_with("sqlite:") {
        return Err(StoreError::UnsupportedUrl(crate::redact_url(url)));
    }
    Ok(SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5)))
}

crate::common::impl_store!(SqliteStore, "sqlite", SqliteConnection, SQLITE_STATEMENTS);
