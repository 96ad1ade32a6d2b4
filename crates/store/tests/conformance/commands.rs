//! Commands that belong to no session (`ping`), and claims raced by several dispatchers.

use anyhow::{Result, ensure};
use serde_json::json;
use streamspace_proto::api::{Action, CommandStatus};
use streamspace_store::{CommandOutcome, NewCommand, StoreError};
use uuid::Uuid;

use super::support::{Db, register};

fn ping(agent_id: &str) -> NewCommand {
    NewCommand {
        command_id: Uuid::now_v7(),
        agent_id: agent_id.to_owned(),
        session_id: None,
        action: Action::Ping,
        payload: json!({}),
    }
}

pub(crate) async fn sessionless_commands_claim_once_and_finish(db: &Db) -> Result<()> {
    let store = db.store().await?;
    let refused = store.create_command(&ping("nobody")).await;
    ensure!(
        matches!(refused, Err(StoreError::NotFound { what: "agent" })),
        "a command for an unknown agent must be refused: {refused:?}"
    );
    register(&*store, "a1", 1).await?;
    let orphan = NewCommand {
        session_id: Some(Uuid::now_v7()),
        action: Action::StopSession,
        ..ping("a1")
    };
    let refused = store.create_command(&orphan).await;
    ensure!(
        matches!(refused, Err(StoreError::NotFound { what: "session" })),
        "a command for an unknown session must be refused: {refused:?}"
    );
    let new = ping("a1");
    let created = store.create_command(&new).await?;
    ensure!(created.status == CommandStatus::Pending && created.session_id.is_none());
    ensure!(created.action == Action::Ping);
    ensure!(
        matches!(
            store.create_command(&new).await,
            Err(StoreError::Conflict(_))
        ),
        "a repeated command id must conflict"
    );
    let deliverable = store.deliverable_commands("a1", 5.0, 5, false, 10).await?;
    ensure!(deliverable.iter().any(|c| c.command_id == new.command_id));

    // Eight dispatchers (as on several replicas) race for the first attempt: one wins.
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        let id = new.command_id;
        claims.spawn(async move { store.claim_delivery(id, 0).await });
    }
    let mut winners = 0;
    while let Some(claim) = claims.join_next().await {
        if claim??.is_some() {
            winners += 1;
        }
    }
    ensure!(winners == 1, "{winners} dispatchers claimed attempt 1");

    let (done, changed) = store
        .finish_command(
            "a1",
            new.command_id,
            &CommandOutcome::Completed(json!({ "pong": true })),
        )
        .await?;
    ensure!(changed && done.status == CommandStatus::Completed);
    ensure!(done.result == Some(json!({ "pong": true })));
    ensure!(done.updated_at >= done.completed_at.unwrap_or(done.updated_at));
    // Never acknowledged on its own: the result implies the ack and dates it.
    match (done.sent_at, done.acknowledged_at, done.completed_at) {
        (Some(sent), Some(acked), Some(completed)) => ensure!(
            sent <= acked && acked <= completed,
            "timestamps out of order: {done:?}"
        ),
        _ => anyhow::bail!("a finished command lacks a timestamp: {done:?}"),
    }
    let (again, changed) = store
        .finish_command("a1", new.command_id, &CommandOutcome::Failed("late".into()))
        .await?;
    ensure!(
        !changed && again == done,
        "a repeated result changed {again:?}"
    );
    let foreign = store
        .finish_command("a2", new.command_id, &CommandOutcome::Completed(json!({})))
        .await;
    ensure!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "another agent's result: {foreign:?}"
    );
    Ok(())
}

/// The dispatcher's batch claim: every due command once, oldest first, with its attempt
/// counted, and nothing for a dispatcher racing it.
pub(crate) async fn due_commands_are_claimed_once_in_order(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 1).await?;
    register(&*store, "a2", 1).await?;
    let mut created = Vec::new();
    for _ in 0..30 {
        created.push(store.create_command(&ping("a1")).await?.command_id);
    }
    store.create_command(&ping("a2")).await?;
    let first = store.claim_due_commands("a1", 60.0, 5, 20).await?;
    ensure!(first.len() == 20, "claimed {} of 20", first.len());
    ensure!(
        first
            .iter()
            .map(|c| c.command_id)
            .eq(created[..20].iter().copied()),
        "not oldest first"
    );
    ensure!(
        first
            .iter()
            .all(|c| c.status == CommandStatus::Sent && c.attempts == 1 && c.sent_at.is_some()),
        "{first:?}"
    );
    let stored = store.get_command(first[0].command_id).await?;
    ensure!(
        stored == first[0],
        "the claim returned {:?}, stored {stored:?}",
        first[0]
    );

    // Two dispatchers race for the rest: each command goes to exactly one.
    let (a, b) = tokio::join!(
        store.claim_due_commands("a1", 60.0, 5, 100),
        store.claim_due_commands("a1", 60.0, 5, 100)
    );
    let mut rest: Vec<_> = a?.into_iter().chain(b?).map(|c| c.command_id).collect();
    rest.sort();
    ensure!(rest == created[20..], "the race claimed {rest:?}");
    ensure!(
        store
            .claim_due_commands("a1", 60.0, 5, 100)
            .await?
            .is_empty(),
        "sent commands are not due before their ack timeout"
    );
    // Past the (zero) ack timeout a sent command is due again, with its next attempt.
    let again = store.claim_due_commands("a1", 0.0, 5, 100).await?;
    ensure!(again.len() == 30 && again.iter().all(|c| c.attempts == 2));
    let other = store.claim_due_commands("a2", 60.0, 5, 100).await?;
    ensure!(other.len() == 1 && other[0].agent_id == "a2");
    Ok(())
}
