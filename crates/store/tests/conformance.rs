//! One conformance suite for the `Store` contract, run against real SQLite (a file in a
//! temporary directory) and real PostgreSQL (a throwaway cluster per test; nextest runs each
//! test in its own process). A test that cannot start PostgreSQL fails; it never skips.

mod support;

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use streamspace_proto::api::{
    Action, AgentStatus, CommandFilter, CommandStatus, CreateTemplate, Role, SessionState,
};
use streamspace_store::{
    ApiKeyKind, CommandOutcome, MigrationState, NewApiKey, NewCommand, SessionQuery, StoreError,
    migrate,
};
use support::{Db, audit, heartbeat, new_session, new_session_for, register, registration};
use uuid::Uuid;

/// Declares every conformance test once per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    let db = super::support::Db::sqlite()?;
                    super::$name(&db).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    let db = super::support::Db::postgres()?;
                    super::$name(&db).await
                }
            )*
        }
    };
}

conformance!(
    updated_at_follows_updates_and_created_at_stays,
    timestamps_decode_with_millisecond_precision,
    backfill_sets_updated_at_to_created_at,
    down_then_up_restores_the_same_schema,
    migrate_down_to_zero_and_up_again,
    late_ack_after_complete_changes_nothing,
    ack_of_another_agents_command_is_refused,
    command_timestamps_are_ordered,
    claim_delivery_has_one_winner,
    placement_picks_least_loaded_and_enforces_capacity,
    concurrent_placements_never_exceed_capacity,
    no_capacity_without_an_online_agent,
    epoch_fences_stale_connections,
    a_batch_of_registrations_is_each_agents_own,
    a_batch_of_heartbeats_checks_each_key_and_epoch,
    batched_reconnect_reads_answer_as_the_one_agent_reads,
    expire_agents_marks_silent_agents_offline,
    deliverable_commands_follow_backoff,
    fail_stuck_commands_fails_what_cannot_finish,
    finishing_commands_moves_sessions,
    session_state_only_moves_forward,
    session_commands_respect_allowed_states,
    api_keys_lookup_and_revoke,
    settings_get_or_init_keeps_the_first_value,
    delete_agent_refuses_while_sessions_are_active,
    templates_crud_and_conflict,
    listings_filter_and_order,
    runtime_fields_round_trip,
    templates_from_before_0003_get_defaults,
    down_0003_drops_the_runtime_columns,
    sessionless_commands_claim_once_and_finish,
    commands_sent_now_are_claimed_unless_one_is_pending,
    due_commands_are_claimed_once_in_order,
    command_batches_answer_each_in_order,
    concurrent_migrations_apply_each_version_once,
    users_crud_and_lookup,
    last_enabled_admin_is_kept,
    concurrent_demotions_keep_one_admin,
    groups_and_memberships,
    tokens_belong_to_users_and_expire,
    migration_0004_assigns_old_rows_to_the_admin,
    concurrent_creates_stop_at_the_quota,
    usage_sums_sizes_and_counts_hibernated_not_terminated,
    quota_limits_are_set_cleared_and_inherited,
    totp_is_pending_then_enabled_and_steps_are_used_once,
    down_0005_drops_the_totp_columns,
    purges_delete_only_what_ended_long_ago,
    one_purge_at_a_time,
    changes_roll_back_when_their_audit_entry_fails,
    audit_entries_carry_what_the_transaction_knows,
    templates_change_in_one_checked_transaction,
    oidc_flows_are_taken_once,
    oidc_users_are_keyed_by_subject,
    oidc_groups_are_replaced_and_local_ones_kept,
    down_0006_drops_the_oidc_flows,
    user_home_sessions_follow_the_home_to_its_agent,
    a_user_home_is_used_by_one_session_at_a_time,
    deleting_a_user_asks_about_their_home,
    rules_are_kept_on_templates_groups_and_sessions,
    down_0008_drops_the_rules_columns,
    shares_are_made_listed_and_revoked,
    down_0009_drops_the_shares,
    samples_count_the_system_once_per_minute,
    down_0012_drops_the_samples,
);

#[path = "conformance/homes.rs"]
mod homes;
use homes::{
    a_user_home_is_used_by_one_session_at_a_time, deleting_a_user_asks_about_their_home,
    user_home_sessions_follow_the_home_to_its_agent,
};

#[path = "conformance/rules.rs"]
mod rules;
use rules::{down_0008_drops_the_rules_columns, rules_are_kept_on_templates_groups_and_sessions};

#[path = "conformance/shares.rs"]
mod shares;
use shares::{down_0009_drops_the_shares, shares_are_made_listed_and_revoked};

#[path = "conformance/stats.rs"]
mod stats;
use stats::{down_0012_drops_the_samples, samples_count_the_system_once_per_minute};

#[path = "conformance/retention.rs"]
mod retention;
use retention::{one_purge_at_a_time, purges_delete_only_what_ended_long_ago};

#[path = "conformance/audit.rs"]
mod audit;
use audit::{
    audit_entries_carry_what_the_transaction_knows, changes_roll_back_when_their_audit_entry_fails,
};

#[path = "conformance/sso.rs"]
mod sso;
use sso::{
    down_0006_drops_the_oidc_flows, oidc_flows_are_taken_once,
    oidc_groups_are_replaced_and_local_ones_kept, oidc_users_are_keyed_by_subject,
};

#[path = "conformance/totp.rs"]
mod totp;
use totp::{
    down_0005_drops_the_totp_columns, totp_is_pending_then_enabled_and_steps_are_used_once,
};

#[path = "conformance/quota.rs"]
mod quota;
use quota::{
    concurrent_creates_stop_at_the_quota, quota_limits_are_set_cleared_and_inherited,
    usage_sums_sizes_and_counts_hibernated_not_terminated,
};

#[path = "conformance/identity.rs"]
mod identity;
use identity::{
    concurrent_demotions_keep_one_admin, groups_and_memberships, last_enabled_admin_is_kept,
    migration_0004_assigns_old_rows_to_the_admin, tokens_belong_to_users_and_expire,
    users_crud_and_lookup,
};

#[path = "conformance/commands.rs"]
mod commands;
use commands::{
    command_batches_answer_each_in_order, commands_sent_now_are_claimed_unless_one_is_pending,
    due_commands_are_claimed_once_in_order, sessionless_commands_claim_once_and_finish,
};

#[path = "conformance/templates.rs"]
mod templates;
use templates::{
    down_0003_drops_the_runtime_columns, runtime_fields_round_trip,
    templates_change_in_one_checked_transaction, templates_from_before_0003_get_defaults,
};

async fn updated_at_follows_updates_and_created_at_stays(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 4).await?;
    let (session, command) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    db.clock_past(session.updated_at).await?;
    let (moved, changed) = store
        .set_session_state(session.id, SessionState::Starting, None, None)
        .await?;
    ensure!(changed, "pending → starting should change the session");
    ensure!(
        moved.created_at == session.created_at,
        "created_at changed on update"
    );
    ensure!(
        moved.updated_at > session.updated_at,
        "session updated_at did not move: {} then {}",
        session.updated_at,
        moved.updated_at
    );

    db.clock_past(command.updated_at).await?;
    let claimed = store
        .claim_delivery(command.command_id, 0)
        .await?
        .context("claim")?;
    ensure!(
        claimed.created_at == command.created_at,
        "command created_at changed"
    );
    ensure!(
        claimed.updated_at > command.updated_at,
        "command updated_at did not move: {} then {}",
        command.updated_at,
        claimed.updated_at
    );

    let before = store.get_agent("a1").await?;
    db.clock_past(before.updated_at).await?;
    ensure!(
        heartbeat(&*store, "a1", before.epoch, 5, "replica-1").await?,
        "heartbeat refused"
    );
    let after = store.get_agent("a1").await?;
    ensure!(
        after.created_at == before.created_at,
        "agent created_at changed"
    );
    ensure!(
        after.updated_at > before.updated_at,
        "agent updated_at did not move"
    );
    ensure!(after.max_sessions == 5, "heartbeat did not record capacity");
    Ok(())
}

async fn timestamps_decode_with_millisecond_precision(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let before = chrono::Utc::now();
    register(&*store, "a1", 1).await?;
    let agent = store.get_agent("a1").await?;
    let after = chrono::Utc::now();
    let slack = chrono::Duration::milliseconds(5);
    ensure!(
        agent.created_at >= before - slack && agent.created_at <= after + slack,
        "database time {} is not between {before} and {after}",
        agent.created_at
    );
    if db.is_sqlite() {
        let raw = db.strings("SELECT created_at FROM agents").await?;
        let text = raw.first().context("no agent row")?;
        ensure!(
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.3f").is_ok()
                && text.len() == 23,
            "stored timestamp {text:?} is not YYYY-MM-DD HH:MM:SS.mmm"
        );
    }
    Ok(())
}

async fn backfill_sets_updated_at_to_created_at(db: &Db) -> Result<()> {
    let applied = migrate::up_to(&db.url, 1).await?;
    ensure!(applied == vec![1], "up_to(1) applied {applied:?}");
    db.exec("INSERT INTO agents (agent_id, platform) VALUES ('old', 'process')")
        .await?;
    let old = if db.is_sqlite() {
        "'2020-01-02 03:04:05.678'"
    } else {
        "'2020-01-02 03:04:05.678+00'"
    };
    let id = Uuid::now_v7();
    db.exec(&format!(
        "INSERT INTO agent_commands (command_id, agent_id, action, payload, created_at) \
         VALUES ('{id}', 'old', 'start_session', '{{}}', {old})"
    ))
    .await?;
    let applied = migrate::up(&db.url).await?;
    ensure!(applied.first() == Some(&2), "up applied {applied:?}");
    let store = db.open().await?;
    let command = store.get_command(id).await?;
    ensure!(
        command.updated_at == command.created_at,
        "backfill left updated_at {} for created_at {}",
        command.updated_at,
        command.created_at
    );
    ensure!(command.created_at.to_rfc3339() == "2020-01-02T03:04:05.678+00:00");
    // New rows get the default, and updates bump it.
    let claimed = store
        .claim_delivery(id, 0)
        .await?
        .context("claim old command")?;
    ensure!(
        claimed.updated_at > claimed.created_at,
        "trigger did not bump updated_at"
    );
    Ok(())
}

async fn down_then_up_restores_the_same_schema(db: &Db) -> Result<()> {
    let all = migrate::up(&db.url).await?;
    let full = db.schema().await?;
    // Revert everything after 0001 (0002 and whatever later migrations exist).
    let after_first: Vec<i64> = all.iter().copied().filter(|v| *v > 1).collect();
    let reverted = migrate::down(&db.url, u32::try_from(after_first.len())?).await?;
    ensure!(
        reverted.iter().rev().eq(after_first.iter()),
        "down reverted {reverted:?}"
    );
    let partial = db.schema().await?;
    ensure!(
        partial != full,
        "reverting 0002 changed nothing in the schema"
    );
    ensure!(
        !partial
            .iter()
            .any(|line| line.contains("agent_commands_set_updated_at")),
        "0002's trigger survived its down migration: {partial:#?}"
    );
    let applied = migrate::up(&db.url).await?;
    ensure!(applied == after_first, "up applied {applied:?}");
    let again = db.schema().await?;
    ensure!(
        again == full,
        "schema differs after down+up:\nbefore {full:#?}\nafter {again:#?}"
    );
    Ok(())
}

async fn migrate_down_to_zero_and_up_again(db: &Db) -> Result<()> {
    let applied = migrate::up(&db.url).await?;
    // Ascending from 1; numbers are handed out to parallel branches, so one may be missing
    // until they are all merged.
    let all = applied.clone();
    ensure!(
        applied.len() >= 3 && applied.first() == Some(&1) && applied.is_sorted(),
        "up applied {applied:?}"
    );
    ensure!(
        migrate::up(&db.url).await?.is_empty(),
        "second up applied something"
    );
    let status = migrate::status(&db.url).await?;
    ensure!(
        status.iter().all(|m| m.state == MigrationState::Applied),
        "{status:?}"
    );
    let reverted = migrate::down(&db.url, 100).await?;
    ensure!(
        reverted.iter().rev().eq(all.iter()),
        "down(100) reverted {reverted:?}"
    );
    let status = migrate::status(&db.url).await?;
    ensure!(status.len() == all.len(), "status lists {status:?}");
    ensure!(
        status.iter().all(|m| m.state == MigrationState::Pending),
        "{status:?}"
    );
    ensure!(
        !db.schema().await?.iter().any(|l| l.contains("agents")),
        "tables left after migrating down to zero"
    );
    ensure!(migrate::up(&db.url).await? == all);
    let store = db.open().await?;
    store.ping().await?;
    register(&*store, "a1", 1).await?;
    store.create_session(&new_session("bob"), &audit()).await?;
    Ok(())
}

async fn late_ack_after_complete_changes_nothing(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    let (_, command) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let id = command.command_id;
    store.claim_delivery(id, 0).await?.context("claim")?;
    let outcome = CommandOutcome::Completed(json!({"vnc_address": "127.0.0.1:5901"}));
    let (done, changed) = store.finish_command("a1", id, &outcome).await?;
    ensure!(
        changed && done.status == CommandStatus::Completed,
        "{done:?}"
    );
    ensure!(!store.ack_command("a1", id).await?, "late ack was accepted");
    let failed = CommandOutcome::Failed("late".into());
    let (again, changed) = store.finish_command("a1", id, &failed).await?;
    ensure!(!changed, "a terminal command changed again");
    ensure!(again.status == CommandStatus::Completed && again.error_message.is_none());
    ensure!(again.result == Some(json!({"vnc_address": "127.0.0.1:5901"})));
    // The result implied the ack (and dated it); the late ack moved nothing.
    ensure!(
        again.acknowledged_at.is_some() && again.acknowledged_at == done.acknowledged_at,
        "late ack changed acknowledged_at: {done:?} then {again:?}"
    );
    Ok(())
}

async fn ack_of_another_agents_command_is_refused(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    let (_, command) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    register(&*store, "intruder", 1).await?;
    ensure!(
        !store.ack_command("intruder", command.command_id).await?,
        "foreign ack accepted"
    );
    let outcome = CommandOutcome::Completed(json!({}));
    let finish = store
        .finish_command("intruder", command.command_id, &outcome)
        .await;
    ensure!(
        matches!(finish, Err(StoreError::NotFound { .. })),
        "foreign finish: {finish:?}"
    );
    let now = store.get_command(command.command_id).await?;
    ensure!(
        now.status == CommandStatus::Pending,
        "foreign agent moved it to {}",
        now.status
    );
    ensure!(
        store.ack_command("a1", command.command_id).await?,
        "owner's ack refused"
    );
    Ok(())
}

async fn command_timestamps_are_ordered(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    let (_, command) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let id = command.command_id;
    store.claim_delivery(id, 0).await?.context("claim")?;
    store.ack_command("a1", id).await?;
    store
        .finish_command("a1", id, &CommandOutcome::Completed(json!({})))
        .await?;
    let c = store.get_command(id).await?;
    let sent = c.sent_at.context("sent_at")?;
    let acked = c.acknowledged_at.context("acknowledged_at")?;
    let completed = c.completed_at.context("completed_at")?;
    ensure!(
        c.created_at <= sent && sent <= acked && acked <= completed && completed <= c.updated_at,
        "out of order: created {} sent {sent} acked {acked} completed {completed} updated {}",
        c.created_at,
        c.updated_at
    );
    Ok(())
}

async fn claim_delivery_has_one_winner(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    let (_, command) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let id = command.command_id;
    let (first, second) = tokio::join!(store.claim_delivery(id, 0), store.claim_delivery(id, 0));
    let winners = [first?, second?].into_iter().flatten().collect::<Vec<_>>();
    ensure!(
        winners.len() == 1,
        "{} dispatchers claimed attempt 1",
        winners.len()
    );
    ensure!(winners[0].attempts == 1 && winners[0].status == CommandStatus::Sent);
    ensure!(
        store.claim_delivery(id, 0).await?.is_none(),
        "stale claim succeeded"
    );
    let resend = store.claim_delivery(id, 1).await?.context("resend claim")?;
    ensure!(resend.attempts == 2 && resend.sent_at >= winners[0].sent_at);
    store.ack_command("a1", id).await?;
    ensure!(
        store.claim_delivery(id, 2).await?.is_none(),
        "claimed an acknowledged command"
    );
    Ok(())
}

async fn placement_picks_least_loaded_and_enforces_capacity(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a", 2).await?;
    register(&*store, "b", 1).await?;
    let mut placed = Vec::new();
    for _ in 0..3 {
        let (s, c) = store
            .create_session(&new_session("alice"), &audit())
            .await?;
        ensure!(s.agent_id.as_deref() == Some(c.agent_id.as_str()));
        ensure!(c.action == Action::StartSession && c.session_id == Some(s.id));
        placed.push(c.agent_id);
    }
    ensure!(placed == ["a", "b", "a"], "placement order {placed:?}");
    let full = store.create_session(&new_session("alice"), &audit()).await;
    ensure!(
        matches!(full, Err(StoreError::NoCapacity)),
        "over capacity: {full:?}"
    );
    let a = store.get_agent("a").await?;
    ensure!(
        a.active_sessions == 2,
        "agent a reports {} sessions",
        a.active_sessions
    );
    // A terminal session frees its slot.
    let first = store
        .list_sessions(&SessionQuery::default())
        .await?
        .pop()
        .context("no sessions")?;
    store
        .set_session_state(first.id, SessionState::Terminated, None, None)
        .await?;
    store
        .create_session(&new_session("alice"), &audit())
        .await?;
    // Platform filter.
    let mut other = new_session("alice");
    other.platform = Some("kubernetes".into());
    let r = store.create_session(&other, &audit()).await;
    ensure!(
        matches!(r, Err(StoreError::NoCapacity)),
        "platform ignored: {r:?}"
    );
    Ok(())
}

async fn concurrent_placements_never_exceed_capacity(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a", 2).await?;
    register(&*store, "b", 1).await?;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_session(&new_session("alice"), &audit()).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await? {
            Ok(_) => ok += 1,
            Err(StoreError::NoCapacity) => {}
            Err(e) => return Err(e).context("unexpected placement error"),
        }
    }
    ensure!(ok == 3, "{ok} sessions placed on 3 slots");
    for agent in store.list_agents(None, 100).await? {
        ensure!(
            agent.active_sessions <= agent.max_sessions,
            "{agent:?} over capacity"
        );
    }
    Ok(())
}

async fn no_capacity_without_an_online_agent(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let r = store.create_session(&new_session("alice"), &audit()).await;
    ensure!(matches!(r, Err(StoreError::NoCapacity)), "no agents: {r:?}");
    let epoch = register(&*store, "a1", 3).await?;
    ensure!(store.agent_disconnected("a1", epoch).await?);
    let r = store.create_session(&new_session("alice"), &audit()).await;
    ensure!(
        matches!(r, Err(StoreError::NoCapacity)),
        "offline agent used: {r:?}"
    );
    ensure!(
        store
            .list_sessions(&SessionQuery::default())
            .await?
            .is_empty(),
        "failed placement left a session"
    );
    register(&*store, "zero", 0).await?;
    let r = store.create_session(&new_session("alice"), &audit()).await;
    ensure!(
        matches!(r, Err(StoreError::NoCapacity)),
        "max_sessions 0 used: {r:?}"
    );
    Ok(())
}

async fn epoch_fences_stale_connections(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let old = register(&*store, "a1", 1).await?;
    let new = register(&*store, "a1", 1).await?;
    ensure!(new > old, "epoch did not grow: {old} then {new}");
    ensure!(
        !store.agent_disconnected("a1", old).await?,
        "stale disconnect accepted"
    );
    ensure!(
        store.get_agent("a1").await?.status == AgentStatus::Online,
        "stale cleanup won"
    );
    ensure!(
        !heartbeat(&*store, "a1", old, 1, "replica-1").await?,
        "stale heartbeat accepted"
    );
    ensure!(
        heartbeat(&*store, "a1", new, 1, "replica-1").await?,
        "current heartbeat refused"
    );
    ensure!(store.agent_disconnected("a1", new).await?);
    let agent = store.get_agent("a1").await?;
    ensure!(
        agent.status == AgentStatus::Offline && agent.replica_id.is_none(),
        "{agent:?}"
    );
    Ok(())
}

async fn a_batch_of_registrations_is_each_agents_own(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let before = register(&*store, "known", 1).await?;
    let mut moved = registration("known", 7);
    moved.replica_id = "replica-2".into();
    moved.labels = BTreeMap::from([("zone".into(), "b".into())]);
    // A new agent, one that existed, and one named twice (a reconnect racing its own).
    let batch = [
        registration("fresh", 2),
        moved,
        registration("twice", 1),
        registration("twice", 3),
    ];
    let epochs = store.register_agents(&batch).await?;
    ensure!(epochs.len() == 4, "{epochs:?}");
    ensure!(epochs[0] == 1, "a new agent starts at epoch 1: {epochs:?}");
    ensure!(epochs[1] == before + 1, "{before} then {epochs:?}");
    ensure!(
        epochs[3] == epochs[2] + 1,
        "the later of the two is newer: {epochs:?}"
    );
    let known = store.get_agent("known").await?;
    ensure!(
        known.status == AgentStatus::Online
            && known.replica_id.as_deref() == Some("replica-2")
            && known.max_sessions == 7
            && known.labels.get("zone").map(String::as_str) == Some("b"),
        "{known:?}"
    );
    let twice = store.get_agent("twice").await?;
    ensure!(
        twice.epoch == epochs[3] && twice.max_sessions == 3,
        "{twice:?}"
    );
    // The older registration is fenced like any stale connection.
    ensure!(!heartbeat(&*store, "twice", epochs[2], 3, "replica-1").await?);
    ensure!(heartbeat(&*store, "twice", epochs[3], 3, "replica-1").await?);
    ensure!(store.register_agents(&[]).await?.is_empty());
    Ok(())
}

async fn a_batch_of_heartbeats_checks_each_key_and_epoch(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let key = |agent: &str, expires_in_secs: Option<f64>| NewApiKey {
        id: Uuid::now_v7(),
        kind: ApiKeyKind::Agent,
        agent_id: Some(agent.into()),
        prefix: "agt".into(),
        key_hash: format!("h-{agent}-{}", Uuid::now_v7()),
        expires_in_secs,
        ..NewApiKey::default()
    };
    let (valid, revoked, expired) = (key("a1", None), key("a2", None), key("a3", Some(0.05)));
    for k in [&valid, &revoked] {
        store.create_api_key(k.clone(), &audit()).await?;
    }
    store.revoke_api_key(revoked.id, &audit()).await?;
    let created = store.create_api_key(expired.clone(), &audit()).await?;
    // Past its expiry by the database's clock, which decides.
    db.clock_past(created.expires_at.context("an expiring key")?)
        .await?;
    let old = register(&*store, "a1", 1).await?;
    let new = register(&*store, "a1", 1).await?;
    let a2 = register(&*store, "a2", 1).await?;
    let a3 = register(&*store, "a3", 1).await?;
    let beat = |agent: &str, epoch: i64, key_id: Uuid| streamspace_store::AgentHeartbeat {
        agent_id: agent.into(),
        epoch,
        max_sessions: 4,
        replica_id: "replica-2".into(),
        key_id,
    };
    use streamspace_store::HeartbeatOutcome::{KeyGone, Recorded, Replaced};
    let outcomes = store
        .heartbeat_agents(&[
            beat("a1", old, valid.id),
            beat("a2", a2, revoked.id),
            beat("a1", new, valid.id),
            beat("a3", a3, expired.id),
            beat("a1", new, Uuid::now_v7()),
            beat("a1", new, valid.id),
        ])
        .await?;
    ensure!(
        outcomes == [Replaced, KeyGone, Recorded, KeyGone, KeyGone, Recorded],
        "{outcomes:?}"
    );
    let a1 = store.get_agent("a1").await?;
    ensure!(
        a1.max_sessions == 4 && a1.replica_id.as_deref() == Some("replica-2"),
        "the current connection's heartbeat is recorded: {a1:?}"
    );
    for agent in ["a2", "a3"] {
        let a = store.get_agent(agent).await?;
        ensure!(
            a.max_sessions == 1 && a.replica_id.as_deref() == Some("replica-1"),
            "a heartbeat with a key that is gone is not recorded: {a:?}"
        );
    }
    ensure!(store.heartbeat_agents(&[]).await?.is_empty());
    Ok(())
}

/// What a (re)connecting agent's reconciliation and first dispatch read, for many agents at
/// once: each agent's answer is what the one-agent read gives, in the order asked.
async fn batched_reconnect_reads_answer_as_the_one_agent_reads(db: &Db) -> Result<()> {
    let store = db.store().await?;
    // Two sessions on a1, one of them ended; then one on a2, now the less loaded.
    register(&*store, "a1", 3).await?;
    let (ended, ended_start) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let (live, live_start) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    store
        .set_session_state(ended.id, SessionState::Terminated, None, None)
        .await?;
    register(&*store, "a2", 3).await?;
    let (on_a2, _) = store.create_session(&new_session("bob"), &audit()).await?;
    ensure!(on_a2.agent_id.as_deref() == Some("a2"), "{on_a2:?}");

    // a1's commands: one sent, one acknowledged, a ping pending and one completed.
    let ping = |agent: &str| NewCommand {
        command_id: Uuid::now_v7(),
        agent_id: agent.into(),
        session_id: None,
        action: Action::Ping,
        payload: json!({}),
        send_now: None,
    };
    let pending = store.create_command(&ping("a1")).await?;
    let done = store.create_command(&ping("a1")).await?;
    store.claim_delivery(ended_start.command_id, 0).await?;
    store.claim_delivery(live_start.command_id, 0).await?;
    ensure!(store.ack_command("a1", live_start.command_id).await?);
    store
        .finish_command(
            "a1",
            done.command_id,
            &CommandOutcome::Completed(json!({"pong": true})),
        )
        .await?;

    let asked: Vec<String> = ["a2", "a1", "nobody", "a1"].map(String::from).to_vec();
    let sessions = store.list_live_sessions_of(&asked).await?;
    let session_ids =
        |v: &[streamspace_proto::api::Session]| v.iter().map(|s| s.id).collect::<Vec<_>>();
    ensure!(sessions.len() == 4, "{sessions:?}");
    ensure!(session_ids(&sessions[0]) == [on_a2.id], "{sessions:?}");
    ensure!(
        session_ids(&sessions[1]) == [live.id],
        "ended sessions are left out: {sessions:?}"
    );
    ensure!(
        sessions[2].is_empty() && sessions[3] == sessions[1],
        "{sessions:?}"
    );
    for (agent, batched) in asked.iter().zip(&sessions) {
        ensure!(
            *batched == store.list_live_sessions(agent).await?,
            "{agent}"
        );
    }

    let command_ids =
        |v: &[streamspace_proto::api::Command]| v.iter().map(|c| c.command_id).collect::<Vec<_>>();
    for limit in [10, 2] {
        let unfinished = store.unfinished_commands_of(&asked, limit).await?;
        ensure!(unfinished.len() == 4, "{unfinished:?}");
        for (agent, batched) in asked.iter().zip(&unfinished) {
            let one = store
                .deliverable_commands(agent, 3600.0, 3, true, limit)
                .await?;
            ensure!(
                command_ids(batched) == command_ids(&one),
                "{agent}, limit {limit}: {batched:?} against {one:?}"
            );
        }
        let a1 = command_ids(&unfinished[1]);
        let all = [
            ended_start.command_id,
            live_start.command_id,
            pending.command_id,
        ];
        ensure!(
            a1 == all[..(limit as usize).min(3)],
            "a1's unfinished commands, oldest first, at most {limit}: {a1:?}"
        );
    }
    ensure!(store.list_live_sessions_of(&[]).await?.is_empty());
    ensure!(store.unfinished_commands_of(&[], 10).await?.is_empty());
    Ok(())
}

async fn expire_agents_marks_silent_agents_offline(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let epoch = register(&*store, "a", 1).await?;
    register(&*store, "b", 1).await?;
    ensure!(
        store.expire_agents(3600.0).await?.is_empty(),
        "fresh agents expired"
    );
    let b = store.get_agent("b").await?;
    db.clock_past(b.last_heartbeat_at.unwrap_or(b.updated_at))
        .await?;
    ensure!(
        store.expire_agents(0.0).await? == ["a", "b"],
        "silent agents not expired"
    );
    ensure!(store.get_agent("a").await?.status == AgentStatus::Offline);
    ensure!(
        store.expire_agents(0.0).await?.is_empty(),
        "offline agents expired twice"
    );
    // Its connection was only slow (a sweep elsewhere cannot close it): its next heartbeat puts
    // the agent back online on the replica holding it.
    ensure!(
        heartbeat(&*store, "a", epoch, 1, "replica-2").await?,
        "a late heartbeat of the current connection was refused"
    );
    let agent = store.get_agent("a").await?;
    ensure!(
        agent.status == AgentStatus::Online && agent.replica_id.as_deref() == Some("replica-2"),
        "a late heartbeat left the agent as {:?} on {:?}",
        agent.status,
        agent.replica_id
    );
    Ok(())
}

async fn deliverable_commands_follow_backoff(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 2).await?;
    let (_, c) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let id = c.command_id;
    let ids = |v: Vec<streamspace_proto::api::Command>| {
        v.into_iter().map(|c| c.command_id).collect::<Vec<_>>()
    };
    ensure!(
        ids(store
            .deliverable_commands("a1", 3600.0, 3, false, 10)
            .await?)
            == [id]
    );
    ensure!(store.agents_with_deliverable_commands(3600.0, 3).await? == ["a1"]);
    ensure!(
        store
            .deliverable_commands("other", 3600.0, 3, false, 10)
            .await?
            .is_empty()
    );

    store.claim_delivery(id, 0).await?.context("claim")?;
    ensure!(
        store
            .deliverable_commands("a1", 3600.0, 3, false, 10)
            .await?
            .is_empty(),
        "resent before its ack timeout"
    );
    ensure!(
        store
            .agents_with_deliverable_commands(3600.0, 3)
            .await?
            .is_empty()
    );
    ensure!(
        ids(store
            .deliverable_commands("a1", 3600.0, 3, true, 10)
            .await?)
            == [id],
        "reconnect misses sent command"
    );
    // Time passes in the row, not in the test: the first send was 100 s ago, so an ack
    // timeout of 120 s has not run out and one of 60 s has.
    db.backdate_send(id, 100).await?;
    ensure!(
        store
            .deliverable_commands("a1", 120.0, 3, false, 10)
            .await?
            .is_empty(),
        "resent before its ack timeout ran out"
    );
    ensure!(
        ids(store.deliverable_commands("a1", 60.0, 3, false, 10).await?) == [id],
        "not resent after its timeout"
    );
    ensure!(store.agents_with_deliverable_commands(60.0, 3).await? == ["a1"]);
    // Second attempt, sent 100 s ago too: the backoff doubles (60 s · 2 = 120 s has not
    // passed, 40 s · 2 = 80 s has).
    store.claim_delivery(id, 1).await?.context("second claim")?;
    db.backdate_send(id, 100).await?;
    ensure!(
        store
            .deliverable_commands("a1", 60.0, 3, false, 10)
            .await?
            .is_empty(),
        "backoff did not double"
    );
    ensure!(
        ids(store.deliverable_commands("a1", 40.0, 3, false, 10).await?) == [id],
        "not resent after backoff"
    );
    // Out of attempts: long past any backoff, never sent a fourth time.
    store.claim_delivery(id, 2).await?.context("third claim")?;
    db.backdate_send(id, 1000).await?;
    ensure!(
        store
            .deliverable_commands("a1", 1.0, 3, false, 10)
            .await?
            .is_empty(),
        "sent beyond max_attempts"
    );
    ensure!(
        store
            .agents_with_deliverable_commands(1.0, 3)
            .await?
            .is_empty()
    );
    store.ack_command("a1", id).await?;
    ensure!(
        store
            .deliverable_commands("a1", 0.0, 9, false, 10)
            .await?
            .is_empty(),
        "acknowledged resent"
    );
    ensure!(ids(store.deliverable_commands("a1", 0.0, 9, true, 10).await?) == [id]);
    store
        .finish_command("a1", id, &CommandOutcome::Completed(json!({})))
        .await?;
    ensure!(
        store
            .deliverable_commands("a1", 0.0, 9, true, 10)
            .await?
            .is_empty(),
        "finished resent"
    );
    Ok(())
}

async fn fail_stuck_commands_fails_what_cannot_finish(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 5).await?;
    let (pending_session, pending) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let (_, exhausted) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let (_, acked) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    store
        .claim_delivery(exhausted.command_id, 0)
        .await?
        .context("claim")?;
    store
        .claim_delivery(acked.command_id, 0)
        .await?
        .context("claim")?;
    store.ack_command("a1", acked.command_id).await?;
    ensure!(
        store
            .fail_stuck_commands(3600.0, 3600.0, 3600.0, 1)
            .await?
            .is_empty(),
        "failed fresh commands"
    );
    let last_change = store
        .get_command(acked.command_id)
        .await?
        .updated_at
        .max(store.get_command(exhausted.command_id).await?.updated_at);
    db.clock_past(last_change).await?;

    // Out of attempts (1 of 1) and past its ack timeout.
    let failed = store.fail_stuck_commands(3600.0, 3600.0, 0.0, 1).await?;
    ensure!(
        failed.len() == 1 && failed[0].command_id == exhausted.command_id,
        "{failed:?}"
    );
    ensure!(failed[0].status == CommandStatus::Failed && failed[0].completed_at.is_some());
    let session = store
        .get_session(exhausted.session_id.context("session")?)
        .await?;
    ensure!(
        session.state == SessionState::Failed && session.error_message.is_some(),
        "{session:?}"
    );

    // Pending too long.
    let failed = store.fail_stuck_commands(3600.0, 0.0, 3600.0, 5).await?;
    ensure!(
        failed.len() == 1 && failed[0].command_id == pending.command_id,
        "{failed:?}"
    );
    ensure!(
        failed[0]
            .error_message
            .as_deref()
            .is_some_and(|m| !m.is_empty())
    );
    ensure!(store.get_session(pending_session.id).await?.state == SessionState::Failed);

    // Acknowledged but silent.
    let failed = store.fail_stuck_commands(0.0, 3600.0, 3600.0, 5).await?;
    ensure!(
        failed.len() == 1 && failed[0].command_id == acked.command_id,
        "{failed:?}"
    );
    ensure!(
        store
            .fail_stuck_commands(0.0, 0.0, 0.0, 1)
            .await?
            .is_empty(),
        "terminal failed twice"
    );
    Ok(())
}

async fn finishing_commands_moves_sessions(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 5).await?;
    let (s, start) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let done = CommandOutcome::Completed(json!({"vnc_address": "10.0.0.1:5901"}));
    store.finish_command("a1", start.command_id, &done).await?;
    let running = store.get_session(s.id).await?;
    ensure!(running.state == SessionState::Running, "{running:?}");
    ensure!(running.vnc_address.as_deref() == Some("10.0.0.1:5901"));

    let steps = [
        (Action::HibernateSession, SessionState::Hibernated),
        (Action::WakeSession, SessionState::Running),
        (Action::StopSession, SessionState::Terminated),
    ];
    for (action, expected) in steps {
        let cmd = session_command(s.id, action);
        store
            .create_session_command(s.id, &SessionState::ALL, &cmd, &audit())
            .await?;
        let (_, changed) = store
            .finish_command("a1", cmd.command_id, &CommandOutcome::Completed(json!({})))
            .await?;
        ensure!(changed);
        let now = store.get_session(s.id).await?;
        ensure!(
            now.state == expected,
            "{action} left the session {}",
            now.state
        );
    }

    let (failing, start) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    store
        .finish_command(
            "a1",
            start.command_id,
            &CommandOutcome::Failed("no image".into()),
        )
        .await?;
    let failed = store.get_session(failing.id).await?;
    ensure!(failed.state == SessionState::Failed, "{failed:?}");
    ensure!(
        failed.error_message.as_deref() == Some("no image"),
        "{failed:?}"
    );
    let c = store.get_command(start.command_id).await?;
    ensure!(c.status == CommandStatus::Failed && c.error_message.as_deref() == Some("no image"));
    Ok(())
}

async fn session_state_only_moves_forward(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    let (s, _) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let (now, changed) = store
        .set_session_state(s.id, SessionState::Running, Some("h:1"), None)
        .await?;
    ensure!(changed && now.vnc_address.as_deref() == Some("h:1"));
    let (now, changed) = store
        .set_session_state(s.id, SessionState::Starting, None, None)
        .await?;
    ensure!(
        !changed && now.state == SessionState::Running,
        "running went back to starting"
    );
    let (_, changed) = store
        .set_session_state(s.id, SessionState::Running, None, None)
        .await?;
    ensure!(!changed, "same state counted as a transition");
    let (now, changed) = store
        .set_session_state(s.id, SessionState::Failed, None, Some("boom"))
        .await?;
    ensure!(changed && now.error_message.as_deref() == Some("boom"));
    for next in SessionState::ALL {
        let (_, changed) = store.set_session_state(s.id, next, None, None).await?;
        ensure!(!changed, "terminal session moved to {next}");
    }
    let missing = store
        .set_session_state(Uuid::now_v7(), SessionState::Running, None, None)
        .await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    Ok(())
}

async fn session_commands_respect_allowed_states(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    let (s, _) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let cmd = session_command(s.id, Action::HibernateSession);
    let r = store
        .create_session_command(s.id, &[SessionState::Running], &cmd, &audit())
        .await;
    ensure!(
        matches!(&r, Err(StoreError::Conflict(m)) if m.contains("pending")),
        "{r:?}"
    );
    store
        .set_session_state(s.id, SessionState::Terminated, None, None)
        .await?;
    let r = store
        .create_session_command(s.id, &SessionState::ALL, &cmd, &audit())
        .await;
    ensure!(
        matches!(r, Err(StoreError::Conflict(_))),
        "command on terminal session: {r:?}"
    );
    let r = store
        .create_session_command(Uuid::now_v7(), &SessionState::ALL, &cmd, &audit())
        .await;
    ensure!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    Ok(())
}

async fn api_keys_lookup_and_revoke(db: &Db) -> Result<()> {
    let store = db.store().await?;
    ensure!(!store.has_admin_key().await?);
    let admin = NewApiKey {
        id: Uuid::now_v7(),
        kind: ApiKeyKind::Admin,
        user_id: Some(streamspace_store::BOOTSTRAP_ADMIN_ID),
        prefix: "adm".into(),
        key_hash: "h-admin".into(),
        ..NewApiKey::default()
    };
    let created = store.create_api_key(admin.clone(), &audit()).await?;
    ensure!(created.id == admin.id && created.last_used_at.is_none());
    ensure!(store.has_admin_key().await?);
    let dup = store
        .create_api_key(
            NewApiKey {
                id: Uuid::now_v7(),
                ..admin.clone()
            },
            &audit(),
        )
        .await;
    ensure!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "duplicate hash: {dup:?}"
    );
    let agent_key = NewApiKey {
        id: Uuid::now_v7(),
        kind: ApiKeyKind::Agent,
        agent_id: Some("a1".into()),
        prefix: "agt".into(),
        key_hash: "h-agent".into(),
        ..NewApiKey::default()
    };
    store.create_api_key(agent_key.clone(), &audit()).await?;

    let found = store
        .find_api_key("h-agent")
        .await?
        .context("agent key not found")?;
    ensure!(
        found.id == agent_key.id && found.last_used_at.is_some(),
        "{found:?}"
    );
    ensure!(found.to_agent_key().is_some_and(|k| k.agent_id == "a1"));
    ensure!(store.find_api_key("nope").await?.is_none());
    // In a batch: each answer in its place, a hash named twice found twice, an unknown one
    // not at all; the use is recorded as by the one-key lookup.
    let batch = store
        .find_api_keys(&[
            "h-admin".into(),
            "nope".into(),
            "h-agent".into(),
            "h-admin".into(),
        ])
        .await?;
    let ids: Vec<Option<Uuid>> = batch.iter().map(|k| k.as_ref().map(|k| k.id)).collect();
    ensure!(
        ids == [Some(admin.id), None, Some(agent_key.id), Some(admin.id)],
        "{ids:?}"
    );
    ensure!(
        batch.iter().flatten().all(|k| k.last_used_at.is_some()),
        "{batch:?}"
    );
    ensure!(store.find_api_keys(&[]).await?.is_empty());
    let listed = store.list_api_keys(ApiKeyKind::Agent).await?;
    ensure!(
        listed.len() == 1 && listed[0].id == agent_key.id,
        "{listed:?}"
    );

    store.revoke_api_key(agent_key.id, &audit()).await?;
    ensure!(
        store.find_api_key("h-agent").await?.is_none(),
        "revoked key still accepted"
    );
    ensure!(
        store.find_api_keys(&["h-agent".into()]).await?[0].is_none(),
        "revoked key still found in a batch"
    );
    let listed = store.list_api_keys(ApiKeyKind::Agent).await?;
    ensure!(listed[0].revoked_at.is_some(), "{listed:?}");
    let missing = store.revoke_api_key(Uuid::now_v7(), &audit()).await;
    ensure!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    store.revoke_api_key(admin.id, &audit()).await?;
    ensure!(
        !store.has_admin_key().await?,
        "revoked admin key still counts"
    );
    Ok(())
}

async fn settings_get_or_init_keeps_the_first_value(db: &Db) -> Result<()> {
    let store = db.store().await?;
    ensure!(store.setting_get_or_init("hmac", "first").await? == "first");
    ensure!(store.setting_get_or_init("hmac", "second").await? == "first");
    ensure!(store.setting_get_or_init("other", "x").await? == "x");
    Ok(())
}

async fn delete_agent_refuses_while_sessions_are_active(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    let key = NewApiKey {
        id: Uuid::now_v7(),
        kind: ApiKeyKind::Agent,
        agent_id: Some("a1".into()),
        prefix: "p".into(),
        key_hash: "h1".into(),
        ..NewApiKey::default()
    };
    store.create_api_key(key, &audit()).await?;
    let (s, _) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let r = store.delete_agent("a1", &audit()).await;
    ensure!(
        matches!(r, Err(StoreError::Conflict(_))),
        "deleted with an active session: {r:?}"
    );
    ensure!(
        store.find_api_key("h1").await?.is_some(),
        "refused delete revoked the key"
    );
    store
        .set_session_state(s.id, SessionState::Terminated, None, None)
        .await?;
    store.delete_agent("a1", &audit()).await?;
    ensure!(matches!(
        store.get_agent("a1").await,
        Err(StoreError::NotFound { .. })
    ));
    ensure!(
        store.find_api_key("h1").await?.is_none(),
        "deleted agent's key still works"
    );
    let kept = store.get_session(s.id).await?;
    ensure!(
        kept.agent_id.is_none(),
        "terminal session still points at the deleted agent"
    );
    let again = store.delete_agent("a1", &audit()).await;
    ensure!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    Ok(())
}

async fn templates_crud_and_conflict(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let t = CreateTemplate {
        name: "xterm".into(),
        description: "a terminal".into(),
        command: vec!["xterm".into(), "-fa".into(), "Mono".into()],
        env: BTreeMap::from([("LANG".into(), "C.UTF-8".into())]),
        ..CreateTemplate::default()
    };
    let created = store.create_template(&t, &audit()).await?;
    ensure!(created.command == t.command && created.env == t.env);
    let dup = store.create_template(&t, &audit()).await;
    ensure!(
        matches!(&dup, Err(StoreError::Conflict(m)) if m.contains("xterm")),
        "{dup:?}"
    );
    ensure!(store.get_template("xterm").await? == created);
    ensure!(store.list_templates().await?.len() == 1);
    store.delete_template("xterm", &audit()).await?;
    ensure!(matches!(
        store.get_template("xterm").await,
        Err(StoreError::NotFound { .. })
    ));
    ensure!(matches!(
        store.delete_template("xterm", &audit()).await,
        Err(StoreError::NotFound { .. })
    ));
    Ok(())
}

async fn listings_filter_and_order(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 10).await?;
    let alice = identity::user(&*store, "alice", Role::User).await?;
    let (s1, c1) = store
        .create_session(&new_session_for("alice", alice.id), &audit())
        .await?;
    let (s2, c2) = store.create_session(&new_session("bob"), &audit()).await?;
    let (s3, _) = store
        .create_session(&new_session_for("alice", alice.id), &audit())
        .await?;
    ensure!(
        s1.owner_id == Some(alice.id) && s1.owner == "alice",
        "{s1:?}"
    );
    let alice: Vec<_> = store
        .list_sessions(&SessionQuery {
            owner_id: Some(alice.id),
            ..SessionQuery::default()
        })
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    ensure!(
        alice == [s3.id, s1.id],
        "alice's sessions, newest first: {alice:?}"
    );
    ensure!(store.list_sessions(&SessionQuery::default()).await?.len() == 3);
    ensure!(
        store
            .list_sessions(&SessionQuery {
                agent_id: Some("a1"),
                ..SessionQuery::default()
            })
            .await?
            .len()
            == 3
    );
    ensure!(
        store
            .list_sessions(&SessionQuery {
                agent_id: Some("nobody"),
                ..SessionQuery::default()
            })
            .await?
            .is_empty(),
        "the agent filter keeps only that agent's sessions"
    );
    let all = store
        .list_commands(&CommandFilter::default(), None, None)
        .await?;
    ensure!(
        all.len() == 3 && all[0].id > all[2].id,
        "commands not newest first"
    );
    let f = CommandFilter {
        session_id: Some(s2.id),
        ..Default::default()
    };
    let only = store.list_commands(&f, None, None).await?;
    ensure!(
        only.len() == 1 && only[0].command_id == c2.command_id,
        "{only:?}"
    );
    store.claim_delivery(c1.command_id, 0).await?;
    let f = CommandFilter {
        status: Some(CommandStatus::Sent),
        agent_id: Some("a1".into()),
        ..Default::default()
    };
    let sent = store.list_commands(&f, None, None).await?;
    ensure!(
        sent.len() == 1 && sent[0].command_id == c1.command_id,
        "{sent:?}"
    );
    let mine = store
        .list_commands(
            &CommandFilter::default(),
            Some(s1.owner_id.context("owner")?),
            None,
        )
        .await?;
    ensure!(
        mine.len() == 2
            && mine
                .iter()
                .all(|c| c.session_id == Some(s1.id) || c.session_id == Some(s3.id)),
        "only the commands of alice's sessions: {mine:?}"
    );
    let f = CommandFilter {
        limit: Some(2),
        ..Default::default()
    };
    let newest = store.list_commands(&f, None, None).await?;
    ensure!(newest.len() == 2);
    // Keyset pages: the next page starts below the last id seen, and the pages join up.
    let rest = store
        .list_commands(&CommandFilter::default(), None, newest.last().map(|c| c.id))
        .await?;
    let all = store
        .list_commands(&CommandFilter::default(), None, None)
        .await?;
    ensure!(
        newest.iter().chain(&rest).map(|c| c.id).collect::<Vec<_>>()
            == all.iter().map(|c| c.id).collect::<Vec<_>>(),
        "command pages do not join up"
    );
    let first = store
        .list_sessions(&SessionQuery {
            limit: Some(2),
            ..SessionQuery::default()
        })
        .await?;
    let second = store
        .list_sessions(&SessionQuery {
            before: first.last().map(|s| s.id),
            limit: Some(2),
            ..SessionQuery::default()
        })
        .await?;
    ensure!(
        first.iter().map(|s| s.id).collect::<Vec<_>>() == [s3.id, s2.id]
            && second.iter().map(|s| s.id).collect::<Vec<_>>() == [s1.id],
        "session pages: {first:?} then {second:?}"
    );
    store
        .audit_event(&streamspace_store::AuditEntry {
            actor: "admin".into(),
            actor_id: Some(streamspace_store::BOOTSTRAP_ADMIN_ID),
            client_addr: Some("192.0.2.1".into()),
            action: "session.create".into(),
            target: s1.id.to_string(),
            detail: json!({"n": 1}),
        })
        .await?;
    Ok(())
}

fn session_command(session_id: Uuid, action: Action) -> NewCommand {
    NewCommand {
        command_id: Uuid::now_v7(),
        agent_id: "a1".into(),
        session_id: Some(session_id),
        action,
        payload: json!({"session_id": session_id}),
        send_now: None,
    }
}

/// Replicas started at once against an empty database all migrate it: one applies each
/// migration, the others wait and find it done.
async fn concurrent_migrations_apply_each_version_once(db: &Db) -> Result<()> {
    let runs: Vec<_> = (0..5)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { migrate::up(&url).await })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await?.context("a concurrent migrate::up failed")?);
    }
    let mut versions = applied.clone();
    versions.sort_unstable();
    versions.dedup();
    ensure!(
        versions.len() == applied.len(),
        "a version was applied twice: {applied:?}"
    );
    let status = migrate::status(&db.url).await?;
    ensure!(
        status.iter().all(|m| m.state == MigrationState::Applied),
        "{status:?}"
    );
    Ok(())
}
