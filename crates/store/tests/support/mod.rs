//! Databases for the conformance suite, and small builders.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;
use sqlx::{PgPool, SqlitePool};
use streamspace_store::{
    AgentHeartbeat, AgentRegistration, ApiKeyKind, HeartbeatOutcome, NewApiKey, NewSession, Store,
    migrate,
};
use streamspace_testkit::PgCluster;
use uuid::Uuid;

/// One test's database: a SQLite file or a database in a throwaway PostgreSQL cluster.
pub struct Db {
    pub url: String,
    _pg: Option<PgCluster>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub fn sqlite() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating a directory for the SQLite file")?;
        let url = streamspace_testkit::sqlite_url(&dir.path().join("store.db"));
        Ok(Self {
            url,
            _pg: None,
            _dir: Some(dir),
        })
    }

    pub fn postgres() -> Result<Self> {
        let cluster = PgCluster::start().context("starting PostgreSQL for the test")?;
        let url = cluster.create_database()?;
        Ok(Self {
            url,
            _pg: Some(cluster),
            _dir: None,
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// Migrates to the newest version, then opens the store.
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        migrate::up(&self.url).await.context("migrating")?;
        self.open().await
    }

    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(streamspace_store::open(&self.url).await?)
    }

    /// Runs one raw statement.
    pub async fn exec(&self, statement: &str) -> Result<()> {
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        if self.is_sqlite() {
            let pool = SqlitePool::connect(&self.url).await?;
            sqlx::query(statement).execute(&pool).await?;
            pool.close().await;
        } else {
            let pool = PgPool::connect(&self.url).await?;
            sqlx::query(statement).execute(&pool).await?;
            pool.close().await;
        }
        Ok(())
    }

    /// Moves the last send of command `id` `secs` seconds into the past: how the tests let
    /// time pass for the resend rules without waiting for it (and without depending on how
    /// fast the machine is).
    pub async fn backdate_send(&self, id: Uuid, secs: u32) -> Result<()> {
        let statement = if self.is_sqlite() {
            format!(
                "UPDATE agent_commands SET sent_at = \
                 strftime('%Y-%m-%d %H:%M:%f', sent_at, '-{secs} seconds') \
                 WHERE command_id = '{id}'"
            )
        } else {
            format!(
                "UPDATE agent_commands SET sent_at = sent_at - make_interval(secs => {secs}) \
                 WHERE command_id = '{id}'"
            )
        };
        self.exec(&statement).await
    }

    /// The first column of every row of a query, as text.
    pub async fn strings(&self, query: &str) -> Result<Vec<String>> {
        let query = sqlx::AssertSqlSafe(query.to_owned());
        let rows = if self.is_sqlite() {
            let pool = SqlitePool::connect(&self.url).await?;
            let rows = sqlx::query_scalar(query).fetch_all(&pool).await?;
            pool.close().await;
            rows
        } else {
            let pool = PgPool::connect(&self.url).await?;
            let rows = sqlx::query_scalar(query).fetch_all(&pool).await?;
            pool.close().await;
            rows
        };
        Ok(rows)
    }

    /// Everything that defines our schema, one line per object, sorted.
    pub async fn schema(&self) -> Result<Vec<String>> {
        if self.is_sqlite() {
            return self
                .strings(
                    "SELECT type || ' ' || name || ' ON ' || tbl_name || ': ' || COALESCE(sql, '') \
                     FROM sqlite_master WHERE name NOT LIKE '_sqlx%' ORDER BY 1",
                )
                .await;
        }
        self.strings(
            "SELECT line FROM ( \
               SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || \
                      ' null=' || is_nullable || ' default=' || COALESCE(column_default, '') AS line \
               FROM information_schema.columns \
               WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%' \
               UNION ALL SELECT 'trigger ' || tgname || ': ' || pg_get_triggerdef(t.oid) \
               FROM pg_trigger t WHERE NOT t.tgisinternal \
               UNION ALL SELECT 'function ' || p.proname || ': ' || p.prosrc FROM pg_proc p \
               JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' \
               UNION ALL SELECT 'index ' || indexdef FROM pg_indexes \
               WHERE schemaname = 'public' AND tablename NOT LIKE '\\_sqlx%' \
               UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ': ' \
                      || pg_get_constraintdef(c.oid) FROM pg_constraint c \
               JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public' \
             ) s ORDER BY line",
        )
        .await
    }
}

impl Db {
    /// Returns once the database's own clock reads later than `t`, so a row written next gets a
    /// later timestamp than one written at `t` (timestamps have millisecond precision). The
    /// stores take their timestamps from the database, whose clock a test cannot pause: this
    /// waits for that clock to pass `t`, asking it, rather than sleeping for a guessed while.
    pub async fn clock_past(&self, t: chrono::DateTime<chrono::Utc>) -> Result<()> {
        let query = if self.is_sqlite() {
            "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"
        } else {
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
        };
        for _ in 0..10_000 {
            let now = self.strings(query).await?;
            let now = now.first().context("the database told no time")?;
            let now = chrono::NaiveDateTime::parse_from_str(now, "%Y-%m-%d %H:%M:%S%.f")
                .with_context(|| format!("the database's clock {now:?}"))?
                .and_utc();
            if now > t {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
        anyhow::bail!("the database's clock did not pass {t} in 10,000 readings")
    }
}

pub async fn register(store: &dyn Store, agent_id: &str, max_sessions: i32) -> Result<i64> {
    Ok(store
        .register_agent(&registration(agent_id, max_sessions))
        .await?)
}

/// Records one heartbeat of `agent_id`'s connection at `epoch`, held by `replica_id`, as a
/// replica does (a batch of one, with a valid key made for it); whether it was recorded
/// (false: the connection is no longer current).
pub async fn heartbeat(
    store: &dyn Store,
    agent_id: &str,
    epoch: i64,
    max_sessions: i32,
    replica_id: &str,
) -> Result<bool> {
    let key = NewApiKey {
        id: Uuid::now_v7(),
        kind: ApiKeyKind::Agent,
        agent_id: Some(agent_id.into()),
        prefix: "agt".into(),
        key_hash: format!("h-{agent_id}-{}", Uuid::now_v7()),
        ..NewApiKey::default()
    };
    store.create_api_key(key.clone(), &audit()).await?;
    let beat = AgentHeartbeat {
        agent_id: agent_id.into(),
        epoch,
        max_sessions,
        replica_id: replica_id.into(),
        key_id: key.id,
    };
    match store.heartbeat_agents(&[beat]).await?.as_slice() {
        [HeartbeatOutcome::Recorded] => Ok(true),
        [HeartbeatOutcome::Replaced] => Ok(false),
        other => anyhow::bail!("a heartbeat with a fresh key came to {other:?}"),
    }
}

/// Registers an agent that keeps user homes.
pub async fn register_with_homes(
    store: &dyn Store,
    agent_id: &str,
    max_sessions: i32,
) -> Result<i64> {
    let reg = AgentRegistration {
        user_homes: true,
        ..registration(agent_id, max_sessions)
    };
    Ok(store.register_agent(&reg).await?)
}

pub fn registration(agent_id: &str, max_sessions: i32) -> AgentRegistration {
    AgentRegistration {
        agent_id: agent_id.into(),
        platform: "process".into(),
        version: "0.1.0".into(),
        max_sessions,
        labels: BTreeMap::from([("zone".into(), "test".into())]),
        replica_id: "replica-1".into(),
        user_homes: false,
    }
}

/// What a session of a template without resources counts, in these tests.
pub const DEFAULT_SIZE: streamspace_store::SessionSize = streamspace_store::SessionSize {
    cpu_millis: 1000,
    memory_mib: 2048,
};

/// A session owned, by id, by the bootstrap admin (owner names are only shown).
pub fn new_session(owner: &str) -> NewSession {
    new_session_for(owner, streamspace_store::BOOTSTRAP_ADMIN_ID)
}

pub fn new_session_for(owner: &str, owner_id: Uuid) -> NewSession {
    let id = Uuid::now_v7();
    NewSession {
        id,
        template: "xterm".into(),
        owner: owner.into(),
        owner_id,
        command_id: Uuid::now_v7(),
        payload: json!({"session_id": id, "template": "xterm"}),
        platform: Some("process".into()),
        quota: streamspace_proto::api::QuotaLimits::default(),
        size: DEFAULT_SIZE,
        default_size: DEFAULT_SIZE,
        user_home: None,
    }
}

/// The audit entry the suite's changes are recorded with.
pub fn audit() -> streamspace_store::AuditEntry {
    streamspace_store::AuditEntry::system("test.change", "conformance", json!({}))
}
