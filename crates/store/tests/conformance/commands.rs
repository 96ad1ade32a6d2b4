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
    ensure!(
        matches!(
            store.create_command(&ping("nobody")).await,
            Err(StoreError::NotFound { .. })
        ),
        "a command for an unknown agent must be refused"
    );
    register(&*store, "a1", 1).await?;
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
    Ok(())
}
