//! Retention: purges delete only what ended long enough ago, oldest first and in batches;
//! a deleted session takes its commands with it; live sessions stay however old.

use anyhow::{Result, ensure};
use serde_json::json;
use streamspace_proto::api::SessionState;
use streamspace_store::{AuditEntry, Purge};

use super::support::{Db, audit, new_session, register};

/// Thirty days, in seconds.
const MONTH: f64 = 30.0 * 24.0 * 3600.0;

/// Moves rows `filter` selects of `table` to 2020, as if they were made and last changed then.
async fn backdate(db: &Db, table: &str, filter: &str) -> Result<()> {
    let old = if db.is_sqlite() {
        "'2020-01-01 00:00:00.000'"
    } else {
        "'2020-01-01T00:00:00Z'"
    };
    if !db.is_sqlite() {
        // The update trigger would stamp the backdated rows with the present.
        db.exec(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
            .await?;
    }
    let columns: &[&str] = match table {
        "sessions" => &["created_at", "updated_at"],
        "agent_commands" => &["created_at", "completed_at"],
        _ => &["at"],
    };
    // One column per statement: on SQLite, changing `created_at` fires the trigger that
    // stamps `updated_at`, so that one goes last.
    for column in columns {
        db.exec(&format!(
            "UPDATE {table} SET {column} = {old} WHERE {filter}"
        ))
        .await?;
    }
    Ok(())
}

fn entry(action: &str) -> AuditEntry {
    AuditEntry {
        actor: "user:admin".into(),
        actor_id: None,
        client_addr: None,
        action: action.into(),
        target: "x".into(),
        detail: json!({}),
    }
}

pub async fn purges_delete_only_what_ended_long_ago(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 8).await?;
    let (ended_old, old_command) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let (ended_new, _) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let (live_old, live_command) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    for id in [ended_old.id, ended_new.id] {
        store
            .set_session_state(id, SessionState::Failed, None, Some("gone"))
            .await?;
    }
    store
        .set_session_state(live_old.id, SessionState::Running, Some("h:1"), None)
        .await?;
    // The start commands of the old sessions finished long ago.
    db.exec(&format!(
        "UPDATE agent_commands SET status = 'completed' WHERE command_id IN ('{}', '{}')",
        old_command.command_id, live_command.command_id
    ))
    .await?;
    let ids = |ids: &[uuid::Uuid]| {
        ids.iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    backdate(
        db,
        "sessions",
        &format!("id IN ({})", ids(&[ended_old.id, live_old.id])),
    )
    .await?;
    backdate(
        db,
        "agent_commands",
        &format!(
            "command_id IN ({})",
            ids(&[old_command.command_id, live_command.command_id])
        ),
    )
    .await?;

    ensure!(store.purge(Purge::Sessions, MONTH, 100).await? == Some(1));
    ensure!(
        store.get_session(ended_old.id).await.is_err(),
        "the old ended session is gone"
    );
    ensure!(
        store.get_session(ended_new.id).await.is_ok(),
        "a recent one stays"
    );
    ensure!(
        store.get_session(live_old.id).await.is_ok(),
        "a live one stays"
    );
    ensure!(
        store.get_command(old_command.command_id).await.is_err(),
        "its commands went with it"
    );
    ensure!(store.purge(Purge::Sessions, MONTH, 100).await? == Some(0));

    // The live session's finished start command is old history; a pending one would stay.
    ensure!(store.purge(Purge::Commands, MONTH, 100).await? == Some(1));
    ensure!(store.get_command(live_command.command_id).await.is_err());
    ensure!(store.get_session(live_old.id).await.is_ok());

    let live = store.list_live_sessions("a1").await?;
    ensure!(
        live.iter().map(|s| s.id).collect::<Vec<_>>() == vec![live_old.id],
        "only the running session is live: {live:?}"
    );

    for n in 0..3 {
        store.audit_event(&entry(&format!("old.{n}"))).await?;
    }
    store.audit_event(&entry("recent")).await?;
    backdate(db, "audit_log", "action LIKE 'old.%'").await?;
    ensure!(
        store.purge(Purge::Audit, MONTH, 2).await? == Some(2),
        "a batch at most"
    );
    ensure!(store.purge(Purge::Audit, MONTH, 2).await? == Some(1));
    ensure!(store.purge(Purge::Audit, MONTH, 2).await? == Some(0));
    let left = db
        .strings("SELECT action FROM audit_log WHERE action LIKE 'old.%' OR action = 'recent'")
        .await?;
    ensure!(left == vec!["recent".to_owned()], "{left:?}");
    Ok(())
}

/// On PostgreSQL, a replica purging holds an advisory lock for its transaction; another that
/// tries meanwhile skips its round (`None`) instead of deleting the same rows in parallel.
pub async fn one_purge_at_a_time(db: &Db) -> Result<()> {
    let store = db.store().await?;
    if db.is_sqlite() {
        // One process writes a SQLite file; there is nothing to take turns with.
        ensure!(store.purge(Purge::Audit, MONTH, 10).await? == Some(0));
        return Ok(());
    }
    let pool = sqlx::PgPool::connect(&db.url).await?;
    let mut other = pool.begin().await?;
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(6004231055597847857)")
        .fetch_one(&mut *other)
        .await?;
    ensure!(taken, "the test could not take the purge lock");
    ensure!(
        store.purge(Purge::Audit, MONTH, 10).await?.is_none(),
        "a purge ran while another held the lock"
    );
    other.commit().await?;
    ensure!(store.purge(Purge::Audit, MONTH, 10).await? == Some(0));
    Ok(())
}
