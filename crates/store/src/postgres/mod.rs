//! The PostgreSQL backend: production, several replicas sharing one database.
//!
//! Differs from SQLite where several writers really run at once: placing a session locks the
//! owner's row and then the chosen agent row (`SELECT … FOR [NO KEY] UPDATE`) and checks the
//! quota and the agent's capacity under those locks, and a delivery claim skips rows another
//! dispatcher holds (`FOR UPDATE SKIP LOCKED`).

use std::collections::HashMap;
use std::sync::LazyLock;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use streamspace_proto::api::{Command, CommandStatus, Session};
use uuid::Uuid;

use crate::rows::{CommandRow, DbUuid};
use crate::sql::{self, PG_STATEMENTS};
use crate::{AuditEntry, NewSession, Result, StoreError};

/// Migrations of this backend, embedded in the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How often placement retries when the chosen agent filled up before it could be locked.
const PLACEMENT_TRIES: usize = 8;

static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE agent_commands SET status = 'sent', attempts = attempts + 1, \
         sent_at = clock_timestamp() WHERE id = (SELECT id FROM agent_commands \
         WHERE command_id = $1 AND attempts = $2 AND status IN ({}) FOR UPDATE SKIP LOCKED) \
         RETURNING {}",
        sql::command_from(CommandStatus::Sent),
        sql::command_columns!()
    )
});

/// Registers every agent of the arrays at once (see [`crate::Store::register_agents`]); the
/// same update as the one-agent statement, which an agent must not appear twice in.
static REGISTER_MANY: LazyLock<String> = LazyLock::new(|| {
    "INSERT INTO agents (agent_id, platform, version, max_sessions, labels, replica_id, \
     status, epoch, last_heartbeat_at, user_homes) \
     SELECT t.agent_id, t.platform, t.version, t.max_sessions, t.labels::jsonb, t.replica_id, \
     'online', 1, clock_timestamp(), t.user_homes \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[], \
     $7::bool[]) AS t(agent_id, platform, version, max_sessions, labels, replica_id, user_homes) \
     ON CONFLICT (agent_id) DO UPDATE SET platform = excluded.platform, \
     version = excluded.version, max_sessions = excluded.max_sessions, \
     labels = excluded.labels, replica_id = excluded.replica_id, status = 'online', \
     user_homes = excluded.user_homes, \
     epoch = agents.epoch + 1, last_heartbeat_at = excluded.last_heartbeat_at \
     RETURNING agent_id, epoch"
        .to_owned()
});

/// Inserts every command of the arrays (`$1` ids, `$2` agents, `$3` sessions, `$4` actions,
/// `$5` payloads as JSON text, `$6` whether to send at once, `$7` and `$8` the resend settings
/// that decides by), as [`sql::COMMAND_INSERT`] and `command_insert_sent` do one. The rows of
/// one statement do not see each other: a pending command and one to send at once for the same
/// agent in one batch both go in as asked (only concurrent requests put them there).
static INSERT_COMMANDS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO agent_commands (command_id, agent_id, session_id, action, payload, \
         status, attempts, created_at, sent_at) \
         SELECT n.command_id, n.agent_id, n.session_id, n.action, n.payload::jsonb, {} \
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::bool[], \
         $7::float8[], $8::int4[]) AS n(command_id, agent_id, session_id, action, payload, \
         send_now, ack_secs, max_attempts) \
         CROSS JOIN LATERAL (SELECT clock_timestamp() AS at, n.send_now AND {} AS now_sent) AS s \
         RETURNING {}",
        sql::CLAIMING_INSERT_VALUES,
        sql::command_none_due(&sql::PG, "n.agent_id", "n.ack_secs", "n.max_attempts"),
        sql::command_columns!()
    )
});

/// Claims what is due for each agent of `$1` (`$2` ack timeout, `$3` most attempts, `$4` most
/// per agent), as the one-agent claim does: a lateral subquery per agent keeps the per-agent
/// limit and the row locks (see [`sql::command_claim_due_ids`]).
static CLAIM_DUE_OF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE agent_commands SET status = 'sent', attempts = attempts + 1, \
         sent_at = clock_timestamp() WHERE id IN (SELECT due.id \
         FROM unnest($1::text[]) AS a(for_agent) CROSS JOIN LATERAL ({}) AS due) RETURNING {}",
        sql::command_claim_due_ids(&sql::PG, "a.for_agent", "$2", "$3", "$4"),
        sql::command_columns!()
    )
});

/// Finishes every command of the arrays that belongs to no session and is in a finishable
/// state (`$1` ids, `$2` agents, `$3` statuses, `$4` results as JSON text, `$5` errors), as
/// the one-command statement does; the others are left to the caller.
static FINISH_SESSIONLESS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE agent_commands SET status = r.status_to, result = r.result_to::jsonb, \
         error_message = r.error_to, acknowledged_at = COALESCE(acknowledged_at, now()), \
         completed_at = clock_timestamp() \
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) \
         AS r(for_command, for_agent, status_to, result_to, error_to) \
         WHERE command_id = r.for_command AND agent_id = r.for_agent AND session_id IS NULL \
         AND status IN ({}) RETURNING {}",
        sql::command_from(CommandStatus::Completed),
        sql::command_columns!()
    )
});

/// Finds the unrevoked, unexpired keys of any of the hashes `$1`.
static FIND_KEYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT key_hash, {} FROM api_keys WHERE key_hash = ANY($1) AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > clock_timestamp())",
        sql::key_columns!()
    )
});

/// Records the use of the keys `$1` whose `last_used_at` is older than `$2` seconds.
const TOUCH_KEYS: &str = "UPDATE api_keys SET last_used_at = clock_timestamp() \
     WHERE id = ANY($1) AND (last_used_at IS NULL \
     OR last_used_at < clock_timestamp() - make_interval(secs => $2)) \
     RETURNING id, last_used_at";

/// Records the heartbeats of the arrays (`$1` agents, `$2` epochs, `$3` capacities, `$4` key
/// ids, `$5` replicas) whose keys are still valid, as the one-agent statement does; answers,
/// per heartbeat in order, whether its key was valid and whether its connection was current.
static HEARTBEAT_MANY: LazyLock<String> = LazyLock::new(|| {
    "WITH beat AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::int4[], $4::uuid[], \
     $5::text[]) WITH ORDINALITY AS b(agent_id, epoch, max_sessions, key_id, replica_id, n)), \
     valid AS (SELECT b.* FROM beat b JOIN api_keys k ON k.id = b.key_id \
     WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > clock_timestamp())), \
     done AS (UPDATE agents a SET last_heartbeat_at = clock_timestamp(), \
     max_sessions = v.max_sessions, status = 'online', replica_id = v.replica_id \
     FROM valid v WHERE a.agent_id = v.agent_id AND a.epoch = v.epoch \
     RETURNING a.agent_id, a.epoch) \
     SELECT v.n IS NOT NULL, EXISTS (SELECT 1 FROM done d \
     WHERE d.agent_id = b.agent_id AND d.epoch = b.epoch) \
     FROM beat b LEFT JOIN valid v ON v.n = b.n ORDER BY b.n"
        .to_owned()
});

/// The sessions of the agents `$1` that have not ended, newest first (as
/// [`sql::SESSION_LIST_LIVE`] reads one agent's).
static LIVE_SESSIONS_OF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM sessions WHERE agent_id = ANY($1) \
         AND state NOT IN ('terminated', 'failed') ORDER BY created_at DESC, id DESC",
        sql::session_columns!()
    )
});

/// At most `$2` unfinished commands of each agent of `$1`, oldest first (a lateral subquery
/// per agent keeps the per-agent limit).
static UNFINISHED_OF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT due.* FROM unnest($1::text[]) AS a(for_agent) CROSS JOIN LATERAL \
         (SELECT {} FROM agent_commands WHERE agent_id = a.for_agent \
         AND status IN ('pending', 'sent', 'acknowledged') ORDER BY id LIMIT $2) AS due",
        sql::command_columns!()
    )
});

/// `rows` (each naming its agent with `agent`) grouped per agent of `agent_ids`, in their
/// order, each group keeping the rows' order; an agent named twice gets its rows twice.
fn per_agent<T: Clone>(
    agent_ids: &[String],
    rows: Vec<T>,
    agent: impl Fn(&T) -> Option<&str>,
) -> Vec<Vec<T>> {
    let mut by_agent: HashMap<String, Vec<T>> = HashMap::new();
    for row in rows {
        if let Some(id) = agent(&row) {
            by_agent.entry(id.to_owned()).or_default().push(row);
        }
    }
    agent_ids
        .iter()
        .map(|id| by_agent.get(id).cloned().unwrap_or_default())
        .collect()
}

/// The distinct ids of `agent_ids`, for an array parameter.
fn distinct(agent_ids: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    agent_ids
        .iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// A heartbeat's outcome from (its key was valid, its connection was current).
fn heartbeat_outcome((key_valid, current): (bool, bool)) -> crate::HeartbeatOutcome {
    match (key_valid, current) {
        (false, _) => crate::HeartbeatOutcome::KeyGone,
        (true, false) => crate::HeartbeatOutcome::Replaced,
        (true, true) => crate::HeartbeatOutcome::Recorded,
    }
}

/// [`crate::Store`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…` or `postgresql://…`) with a pool of at most
    /// [`crate::DEFAULT_PG_POOL_SIZE`] connections. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_pool(url, crate::DEFAULT_PG_POOL_SIZE).await
    }

    /// [`Self::connect`] with a pool of at most `pool_size` connections (at least one).
    pub async fn connect_with_pool(url: &str, pool_size: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            // No ping before every statement: it doubled the round trips of the command path.
            // A connection that died idle fails its next statement, which reports the error
            // and is retried by its caller (the dispatcher, the agent, the API client); the
            // pool then replaces it.
            .test_before_acquire(false)
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool (for migrations and tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Checks the owner's quota (locking the owner's row first, so one user's concurrent
    /// creations queue there), then chooses the least-loaded agent, locks it, and re-checks its capacity under the lock (a
    /// new statement sees sessions that concurrent placements committed meanwhile). If it
    /// filled up, the transaction is dropped and placement starts over, so a transaction never
    /// holds more than one agent lock.
    async fn place_session(
        &self,
        new: &NewSession,
        audit: &AuditEntry,
    ) -> Result<(Session, Command)> {
        for _ in 0..PLACEMENT_TRIES {
            let mut tx = self.write_tx().await?;
            Self::check_quota(&mut tx, new).await?;
            let home = Self::home_target(&mut tx, new).await?;
            let Some(agent_id) = sqlx::query_scalar::<_, String>(sql::AGENT_CHOOSE)
                .bind(new.platform.as_deref())
                .bind(home.pinned.as_deref())
                .bind(home.needs_user_homes)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Err(Self::no_agent(&mut tx, &home).await?);
            };
            let locked: Option<String> = sqlx::query_scalar(PG_STATEMENTS.agent_lock)
                .bind(&agent_id)
                .fetch_optional(&mut *tx)
                .await?;
            let has_room: bool = sqlx::query_scalar(sql::AGENT_HAS_ROOM)
                .bind(&agent_id)
                .fetch_one(&mut *tx)
                .await?;
            if locked.is_some() && has_room {
                let placed = Self::insert_session(&mut tx, new, &agent_id).await?;
                let audit = audit.with_detail("agent_id", agent_id.into());
                Self::insert_audit(&mut tx, &audit).await?;
                tx.commit().await?;
                return Ok(placed);
            }
            if locked.is_some() && home.pinned.is_some() {
                return Err(Self::no_agent(&mut tx, &home).await?);
            }
        }
        Err(StoreError::NoCapacity)
    }

    /// One statement for every agent of the batch.
    async fn live_sessions_batch(&self, agent_ids: &[String]) -> Result<Vec<Vec<Session>>> {
        let rows = sqlx::query_as::<_, crate::rows::SessionRow>(sqlx::AssertSqlSafe(
            LIVE_SESSIONS_OF.as_str(),
        ))
        .bind(distinct(agent_ids))
        .fetch_all(&self.pool)
        .await?;
        let sessions: Vec<Session> = crate::rows::convert_all(rows)?;
        Ok(per_agent(agent_ids, sessions, |s| s.agent_id.as_deref()))
    }

    /// One statement for every agent of the batch.
    async fn unfinished_batch(
        &self,
        agent_ids: &[String],
        limit: i64,
    ) -> Result<Vec<Vec<Command>>> {
        let rows = sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(UNFINISHED_OF.as_str()))
            .bind(distinct(agent_ids))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut commands: Vec<Command> = crate::rows::convert_all(rows)?;
        // The lateral rows come agent by agent in the subquery's order; keep it explicit.
        commands.sort_by_key(|c| c.id);
        Ok(per_agent(agent_ids, commands, |c| {
            Some(c.agent_id.as_str())
        }))
    }

    /// One statement for the whole batch (see [`HEARTBEAT_MANY`]).
    async fn heartbeat_batch(
        &self,
        beats: &[crate::AgentHeartbeat],
    ) -> Result<Vec<crate::HeartbeatOutcome>> {
        // In agent id order, as registration batches lock their rows, so that two batches
        // never wait on each other in a circle; the answers are put back in the callers' order.
        let mut order: Vec<usize> = (0..beats.len()).collect();
        order.sort_by(|&a, &b| beats[a].agent_id.cmp(&beats[b].agent_id));
        let sorted: Vec<&crate::AgentHeartbeat> = order.iter().map(|&i| &beats[i]).collect();
        let rows: Vec<(bool, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(HEARTBEAT_MANY.as_str()))
            .bind(
                sorted
                    .iter()
                    .map(|b| b.agent_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(sorted.iter().map(|b| b.epoch).collect::<Vec<_>>())
            .bind(
                sorted
                    .iter()
                    .map(|b| b.max_sessions.max(0))
                    .collect::<Vec<_>>(),
            )
            .bind(sorted.iter().map(|b| b.key_id).collect::<Vec<_>>())
            .bind(
                sorted
                    .iter()
                    .map(|b| b.replica_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.pool)
            .await?;
        if rows.len() != beats.len() {
            return Err(StoreError::Corrupt(format!(
                "{} heartbeats were answered {} times",
                beats.len(),
                rows.len()
            )));
        }
        let mut outcomes = vec![crate::HeartbeatOutcome::Replaced; beats.len()];
        for (&i, row) in order.iter().zip(rows) {
            outcomes[i] = heartbeat_outcome(row);
        }
        Ok(outcomes)
    }

    /// One lookup for all of them, then one update of the `last_used_at` that are stale.
    async fn find_keys_batch(&self, hashes: &[String]) -> Result<Vec<Option<crate::ApiKeyRecord>>> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<crate::rows::FoundKeyRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(FIND_KEYS.as_str()))
                .bind(hashes)
                .fetch_all(&self.pool)
                .await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let record: crate::ApiKeyRecord = row.key.try_into()?;
            found.insert(row.key_hash, record);
        }
        let now = chrono::Utc::now();
        let stale: Vec<Uuid> = found
            .values()
            .filter(|r| {
                r.last_used_at.is_none_or(|at| {
                    now - at >= chrono::TimeDelta::seconds(crate::KEY_USE_RESOLUTION_SECS)
                })
            })
            .map(|r| r.id)
            .collect();
        if !stale.is_empty() {
            let touched: Vec<(DbUuid, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(TOUCH_KEYS)
                .bind(stale)
                .bind(crate::KEY_USE_RESOLUTION_SECS as f64)
                .fetch_all(&self.pool)
                .await?;
            let touched: std::collections::HashMap<Uuid, _> =
                touched.into_iter().map(|(id, at)| (id.0, at)).collect();
            for record in found.values_mut() {
                if let Some(at) = touched.get(&record.id) {
                    record.last_used_at = Some(*at);
                }
            }
        }
        Ok(hashes.iter().map(|h| found.get(h).cloned()).collect())
    }

    /// One statement per round of distinct agents (almost always one round: an agent seldom
    /// registers twice within one batch).
    async fn register_batch(&self, regs: &[crate::AgentRegistration]) -> Result<Vec<i64>> {
        let mut epochs = vec![0i64; regs.len()];
        let mut left: Vec<usize> = (0..regs.len()).collect();
        while !left.is_empty() {
            let mut seen = std::collections::HashSet::new();
            let (mut round, later): (Vec<usize>, Vec<usize>) = left
                .iter()
                .partition(|&&i| seen.insert(regs[i].agent_id.as_str()));
            // Rows locked in id order, as the heartbeat batches lock them: two batches never
            // wait on each other in a circle.
            round.sort_by(|&a, &b| regs[a].agent_id.cmp(&regs[b].agent_id));
            let column = |f: &dyn Fn(&crate::AgentRegistration) -> String| -> Vec<String> {
                round.iter().map(|&i| f(&regs[i])).collect()
            };
            let labels = round
                .iter()
                .map(|&i| serde_json::to_string(&regs[i].labels))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Invalid(format!("agent labels: {e}")))?;
            let rows: Vec<(String, i64)> =
                sqlx::query_as(sqlx::AssertSqlSafe(REGISTER_MANY.as_str()))
                    .bind(column(&|r| r.agent_id.clone()))
                    .bind(column(&|r| r.platform.clone()))
                    .bind(column(&|r| r.version.clone()))
                    .bind(
                        round
                            .iter()
                            .map(|&i| regs[i].max_sessions.max(0))
                            .collect::<Vec<i32>>(),
                    )
                    .bind(labels)
                    .bind(column(&|r| r.replica_id.clone()))
                    .bind(
                        round
                            .iter()
                            .map(|&i| regs[i].user_homes)
                            .collect::<Vec<bool>>(),
                    )
                    .fetch_all(&self.pool)
                    .await?;
            let by_agent: std::collections::HashMap<String, i64> = rows.into_iter().collect();
            for &i in &round {
                epochs[i] = *by_agent.get(&regs[i].agent_id).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "registering agent {:?} returned no epoch",
                        regs[i].agent_id
                    ))
                })?;
            }
            left = later;
        }
        Ok(epochs)
    }

    /// One statement for the whole batch; `None` if the database refused one of them (a
    /// missing agent or session, a taken id), for the caller to insert one by one.
    async fn insert_commands_batch(
        &self,
        commands: &[crate::NewCommand],
    ) -> Result<Option<Vec<Command>>> {
        if commands.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let payloads = commands
            .iter()
            .map(|c| serde_json::to_string(&c.payload))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Invalid(format!("command payload: {e}")))?;
        let rows = sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(INSERT_COMMANDS.as_str()))
            .bind(commands.iter().map(|c| c.command_id).collect::<Vec<_>>())
            .bind(
                commands
                    .iter()
                    .map(|c| c.agent_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(commands.iter().map(|c| c.session_id).collect::<Vec<_>>())
            .bind(
                commands
                    .iter()
                    .map(|c| c.action.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(payloads)
            .bind(
                commands
                    .iter()
                    .map(|c| c.send_now.is_some())
                    .collect::<Vec<_>>(),
            )
            .bind(
                commands
                    .iter()
                    .map(|c| c.send_now.map_or(0.0, |n| n.ack_timeout_secs))
                    .collect::<Vec<_>>(),
            )
            .bind(
                commands
                    .iter()
                    .map(|c| c.send_now.map_or(0, |n| n.max_attempts))
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.pool)
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e))
                if e.is_foreign_key_violation() || e.is_unique_violation() =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let mut by_id: HashMap<Uuid, Command> = HashMap::new();
        for row in rows {
            let command: Command = row.try_into()?;
            by_id.insert(command.command_id, command);
        }
        commands
            .iter()
            .map(|c| {
                by_id.remove(&c.command_id).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "inserting command {} returned no row",
                        c.command_id
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// One statement for every agent of the batch.
    async fn claim_due_batch(
        &self,
        agent_ids: &[String],
        ack_timeout_secs: f64,
        max_attempts: i32,
        limit: i64,
    ) -> Result<Vec<Vec<Command>>> {
        if agent_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(CLAIM_DUE_OF.as_str()))
            .bind(agent_ids)
            .bind(ack_timeout_secs)
            .bind(max_attempts)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        let mut by_agent: HashMap<String, Vec<Command>> = HashMap::new();
        for row in rows {
            let command: Command = row.try_into()?;
            by_agent
                .entry(command.agent_id.clone())
                .or_default()
                .push(command);
        }
        Ok(agent_ids
            .iter()
            .map(|agent_id| {
                let mut claimed = by_agent.remove(agent_id).unwrap_or_default();
                // RETURNING does not keep the subquery's order.
                claimed.sort_by_key(|c| c.id);
                claimed
            })
            .collect())
    }

    /// One statement for the reports on commands without a session; `None` for the others.
    async fn finish_sessionless_batch(
        &self,
        reports: &[crate::CommandReport],
    ) -> Result<Vec<Option<Command>>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        // Only the first report on each command goes into the statement (an UPDATE changes a
        // row once, from whichever of its matches it meets first); the others take the
        // one-report path and find it finished.
        let mut first = std::collections::HashSet::with_capacity(reports.len());
        let mut ids = Vec::with_capacity(reports.len());
        let mut agents = Vec::with_capacity(reports.len());
        let mut statuses = Vec::with_capacity(reports.len());
        let mut results = Vec::with_capacity(reports.len());
        let mut errors = Vec::with_capacity(reports.len());
        for report in reports {
            if !first.insert(report.command_id) {
                continue;
            }
            let (status, result, error) = report.outcome.columns();
            ids.push(report.command_id);
            agents.push(report.agent_id.as_str());
            statuses.push(status);
            results.push(
                result
                    .map(|v| serde_json::to_string(&v.0))
                    .transpose()
                    .map_err(|e| StoreError::Invalid(format!("command result: {e}")))?,
            );
            errors.push(error);
        }
        let rows =
            sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(FINISH_SESSIONLESS.as_str()))
                .bind(ids)
                .bind(agents)
                .bind(statuses)
                .bind(results)
                .bind(errors)
                .fetch_all(&self.pool)
                .await?;
        let mut by_id: HashMap<(Uuid, String), Command> = HashMap::new();
        for row in rows {
            let command: Command = row.try_into()?;
            by_id.insert((command.command_id, command.agent_id.clone()), command);
        }
        Ok(reports
            .iter()
            .map(|r| by_id.remove(&(r.command_id, r.agent_id.clone())))
            .collect())
    }

    /// One statement claims all of them; `RETURNING` sees the trigger's `updated_at`.
    async fn claim_due(
        &self,
        agent_id: &str,
        ack_timeout_secs: f64,
        max_attempts: i32,
        limit: i64,
    ) -> Result<Vec<Command>> {
        let rows = sqlx::query_as::<_, CommandRow>(PG_STATEMENTS.command_claim_due)
            .bind(agent_id)
            .bind(ack_timeout_secs)
            .bind(max_attempts)
            .bind(limit.max(0))
            .fetch_all(&self.pool)
            .await?;
        let mut claimed: Vec<Command> = crate::rows::convert_all(rows)?;
        // RETURNING does not keep the subquery's order.
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// A command without a session finishes in one statement: there is no session to move in
    /// the same transaction. `None` if the row is not such a command in a finishable state.
    async fn finish_sessionless(
        &self,
        agent_id: &str,
        command_id: Uuid,
        outcome: &crate::CommandOutcome,
    ) -> Result<Option<Command>> {
        let (status, result, error) = outcome.columns();
        sqlx::query_as::<_, CommandRow>(PG_STATEMENTS.command_finish_sessionless)
            .bind(DbUuid(command_id))
            .bind(agent_id)
            .bind(status)
            .bind(result)
            .bind(error)
            .fetch_optional(&self.pool)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }

    async fn claim(&self, command_id: Uuid, expected_attempts: i32) -> Result<Option<Command>> {
        sqlx::query_as::<_, CommandRow>(sqlx::AssertSqlSafe(CLAIM.as_str()))
            .bind(DbUuid(command_id))
            .bind(expected_attempts)
            .fetch_optional(&self.pool)
            .await?
            .map(TryInto::try_into)
            .transpose()
    }
}

crate::common::impl_store!(PgStore, "postgres", PgConnection, PG_STATEMENTS);
