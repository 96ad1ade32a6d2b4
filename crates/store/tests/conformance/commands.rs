//! Commands that belong to no session (`ping`), and claims raced by several dispatchers.

use anyhow::{Result, ensure};
use serde_json::json;
use streamspace_proto::api::{Action, CommandStatus};
use streamspace_store::{CommandOutcome, CommandReport, NewCommand, SendNow, StoreError};
use uuid::Uuid;

use super::support::{Db, register};

fn ping(agent_id: &str) -> NewCommand {
    NewCommand {
        command_id: Uuid::now_v7(),
        agent_id: agent_id.to_owned(),
        session_id: None,
        action: Action::Ping,
        payload: json!({}),
        send_now: None,
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

/// The batched forms answer each request in its place, as the one-at-a-time forms would:
/// a refused command does not take the others with it, a claim keeps each agent's limit and
/// order, and a report on a session's command still moves the session.
pub(crate) async fn command_batches_answer_each_in_order(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 5).await?;
    register(&*store, "a2", 1).await?;
    let batch = [ping("a1"), ping("a2"), ping("a1")];
    let created = store.create_commands(&batch).await?;
    ensure!(created.len() == 3, "{created:?}");
    for (asked, answer) in batch.iter().zip(&created) {
        let command = answer.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        ensure!(
            command.command_id == asked.command_id
                && command.agent_id == asked.agent_id
                && command.status == CommandStatus::Pending,
            "asked {asked:?}, got {command:?}"
        );
    }

    let taken = batch[0].clone();
    let fresh = ping("a2");
    let mixed = [ping("nobody"), taken, fresh.clone()];
    let answers = store.create_commands(&mixed).await?;
    ensure!(
        matches!(answers[0], Err(StoreError::NotFound { what: "agent" })),
        "unknown agent: {:?}",
        answers[0]
    );
    ensure!(
        matches!(answers[1], Err(StoreError::Conflict(_))),
        "taken id: {:?}",
        answers[1]
    );
    ensure!(
        matches!(&answers[2], Ok(c) if c.command_id == fresh.command_id),
        "the good one of a refused batch: {:?}",
        answers[2]
    );
    ensure!(store.create_commands(&[]).await?.is_empty());

    // a1 has two due commands, a2 two; at most one each, a1 named twice, a3 unknown.
    let agents = ["a1", "a2", "a1", "a3"].map(String::from);
    let claimed = store.claim_due_commands_of(&agents, 60.0, 5, 1).await?;
    ensure!(claimed.len() == 4, "{claimed:?}");
    ensure!(
        claimed[0].len() == 1 && claimed[0][0].command_id == batch[0].command_id,
        "a1's oldest first: {:?}",
        claimed[0]
    );
    ensure!(
        claimed[1].len() == 1 && claimed[1][0].command_id == batch[1].command_id,
        "a2's oldest first: {:?}",
        claimed[1]
    );
    ensure!(
        claimed[2].is_empty() && claimed[3].is_empty(),
        "{claimed:?}"
    );
    ensure!(
        claimed[0][0].status == CommandStatus::Sent && claimed[0][0].attempts == 1,
        "{:?}",
        claimed[0][0]
    );
    let rest = store
        .claim_due_commands_of(&agents[..2], 60.0, 5, 10)
        .await?;
    ensure!(
        rest[0]
            .iter()
            .map(|c| c.command_id)
            .eq([batch[2].command_id])
            && rest[1].iter().map(|c| c.command_id).eq([fresh.command_id]),
        "the rest: {rest:?}"
    );
    ensure!(
        store
            .claim_due_commands_of(&agents, 60.0, 5, 10)
            .await?
            .iter()
            .all(Vec::is_empty),
        "sent commands are not due before their ack timeout"
    );

    let (session, start) = store
        .create_session(
            &super::support::new_session("alice"),
            &super::support::audit(),
        )
        .await?;
    let report = |agent_id: &str, command_id, outcome| CommandReport {
        agent_id: agent_id.to_owned(),
        command_id,
        outcome,
    };
    let pong = CommandOutcome::Completed(json!({ "pong": true }));
    let reports = [
        report("a1", batch[0].command_id, pong.clone()),
        report(
            "a1",
            batch[0].command_id,
            CommandOutcome::Failed("late".into()),
        ),
        report("a1", batch[1].command_id, pong.clone()),
        report(
            "a1",
            start.command_id,
            CommandOutcome::Completed(json!({ "vnc_address": "10.0.0.1:5901" })),
        ),
        report(
            "a2",
            batch[1].command_id,
            CommandOutcome::Failed("no".into()),
        ),
    ];
    let finished = store.finish_commands(&reports).await?;
    ensure!(finished.len() == reports.len(), "{finished:?}");
    let ok = |i: usize| {
        finished[i]
            .as_ref()
            .map_err(|e| anyhow::anyhow!("report {i}: {e}"))
    };
    let (first, changed) = ok(0)?;
    ensure!(
        *changed
            && first.status == CommandStatus::Completed
            && first.result == Some(json!({ "pong": true })),
        "{first:?}"
    );
    ensure!(first.acknowledged_at.is_some() && first.completed_at.is_some());
    let (again, changed) = ok(1)?;
    ensure!(
        !changed && again == first,
        "a repeated report changed {again:?}"
    );
    ensure!(
        matches!(finished[2], Err(StoreError::NotFound { .. })),
        "another agent's command: {:?}",
        finished[2]
    );
    let (started, changed) = ok(3)?;
    ensure!(
        *changed && started.status == CommandStatus::Completed,
        "{started:?}"
    );
    let running = store.get_session(session.id).await?;
    ensure!(
        running.state == streamspace_proto::api::SessionState::Running
            && running.vnc_address.as_deref() == Some("10.0.0.1:5901"),
        "{running:?}"
    );
    let (failed, changed) = ok(4)?;
    ensure!(
        *changed
            && failed.status == CommandStatus::Failed
            && failed.error_message.as_deref() == Some("no"),
        "{failed:?}"
    );
    ensure!(store.finish_commands(&[]).await?.is_empty());
    Ok(())
}

/// A command inserted to be sent at once (`send_now`) comes back claimed — `sent`, attempt 1 —
/// unless an earlier command of its agent is still pending; alone and in a batch, where only
/// the earlier pending commands of each agent count.
pub(crate) async fn commands_sent_now_are_claimed_unless_one_is_pending(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 5).await?;
    register(&*store, "a2", 5).await?;
    register(&*store, "a3", 5).await?;
    let resend = SendNow {
        ack_timeout_secs: 60.0,
        max_attempts: 5,
    };
    let now = |agent: &str| NewCommand {
        send_now: Some(resend),
        ..ping(agent)
    };
    let sent = store.create_command(&now("a1")).await?;
    ensure!(
        sent.status == CommandStatus::Sent && sent.attempts == 1 && sent.sent_at.is_some(),
        "claimed in its insert: {sent:?}"
    );
    ensure!(
        sent.sent_at.is_some_and(|at| at >= sent.created_at),
        "not sent before it was created: {sent:?}"
    );
    // A claimed command is not claimed again before its ack timeout.
    ensure!(
        store
            .claim_due_commands("a1", 60.0, 5, 10)
            .await?
            .is_empty()
    );
    // Another one while the first is only `sent`: nothing is pending, so it is claimed too.
    let second = store.create_command(&now("a1")).await?;
    ensure!(second.status == CommandStatus::Sent, "{second:?}");
    // Under an ack timeout of zero both are due again: the next one waits behind them.
    let due_first = NewCommand {
        send_now: Some(SendNow {
            ack_timeout_secs: 0.0,
            ..resend
        }),
        ..ping("a1")
    };
    let behind_due = store.create_command(&due_first).await?;
    ensure!(
        behind_due.status == CommandStatus::Pending,
        "behind commands due again: {behind_due:?}"
    );
    let claimed = store.claim_due_commands("a1", 0.0, 5, 10).await?;
    ensure!(
        claimed.iter().map(|c| c.command_id).collect::<Vec<_>>()
            == [sent.command_id, second.command_id, behind_due.command_id],
        "claimed in order: {claimed:?}"
    );

    // A claim given back: only a first attempt still `sent` is.
    let unsent = store.create_command(&now("a3")).await?;
    ensure!(store.unclaim_delivery(unsent.command_id).await?);
    let back = store.get_command(unsent.command_id).await?;
    ensure!(
        back.status == CommandStatus::Pending && back.attempts == 0 && back.sent_at.is_none(),
        "given back: {back:?}"
    );
    ensure!(
        !store.unclaim_delivery(unsent.command_id).await?,
        "a pending command has no claim to give back"
    );
    ensure!(
        !store.unclaim_delivery(sent.command_id).await?,
        "a second attempt is not given back"
    );
    let claimed = store.claim_due_commands("a3", 60.0, 5, 10).await?;
    ensure!(claimed.len() == 1 && claimed[0].command_id == unsent.command_id);

    // A pending command of a2 makes the next one of a2 wait behind it, pending.
    let queued = store.create_command(&ping("a2")).await?;
    let behind = store.create_command(&now("a2")).await?;
    ensure!(
        behind.status == CommandStatus::Pending && behind.attempts == 0 && behind.sent_at.is_none(),
        "behind a pending command: {behind:?}"
    );
    let claimed = store.claim_due_commands("a2", 60.0, 5, 10).await?;
    ensure!(
        claimed.iter().map(|c| c.command_id).collect::<Vec<_>>()
            == [queued.command_id, behind.command_id],
        "the dispatcher claims both, in order: {claimed:?}"
    );

    // In a batch: a2 has nothing pending now, a1 gets a pending command first, a3 is not
    // asked to send at once.
    store.create_command(&ping("a1")).await?;
    let batch = [now("a1"), now("a2"), ping("a3")];
    let created = store.create_commands(&batch).await?;
    let statuses = created
        .iter()
        .map(|c| c.as_ref().map(|c| c.status).map_err(|e| e.to_string()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    ensure!(
        statuses
            == [
                CommandStatus::Pending,
                CommandStatus::Sent,
                CommandStatus::Pending,
            ],
        "{statuses:?}"
    );
    // Alone, the batch takes the one-command statement: the same answer.
    let alone = store.create_commands(&[now("a2")]).await?;
    ensure!(matches!(&alone[..], [Ok(c)] if c.status == CommandStatus::Sent));
    Ok(())
}
