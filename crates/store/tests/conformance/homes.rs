//! User homes on both backends: sessions that mount their owner's home go to agents that keep
//! user homes, then always to the one holding the home (refused, naming it, while it is
//! offline); one session at a time uses a home that is not shared, even under concurrent
//! creations; deleting a user asks what to do with the home.

use anyhow::{Context, Result, ensure};
use streamspace_proto::api::{Action, Role, SessionState};
use streamspace_store::{HomeChoice, NewSession, StoreError, UserHomeUse};
use uuid::Uuid;

use super::identity::user;
use super::support::{Db, audit, new_session_for, register, register_with_homes};

fn with_home(owner: &str, owner_id: Uuid, shared: bool) -> NewSession {
    NewSession {
        user_home: Some(UserHomeUse { shared }),
        ..new_session_for(owner, owner_id)
    }
}

pub async fn user_home_sessions_follow_the_home_to_its_agent(db: &Db) -> Result<()> {
    let store = db.store().await?;
    // a0 would win on load and name, but does not keep user homes.
    register(&*store, "a0", 10).await?;
    let epoch = register_with_homes(&*store, "a1", 10).await?;
    register_with_homes(&*store, "a2", 10).await?;
    let alice = user(&*store, "alice", Role::User).await?;

    let (first, command) = store
        .create_session(&with_home("alice", alice.id, false), &audit())
        .await?;
    ensure!(
        command.agent_id == "a1",
        "only agents with user homes qualify: {command:?}"
    );
    store
        .set_session_state(first.id, SessionState::Terminated, None, None)
        .await?;
    // Another user's home session loads a1, so that a2 would win if the home did not pin.
    let bob = user(&*store, "bob", Role::User).await?;
    let (_, bobs) = store
        .create_session(&with_home("bob", bob.id, false), &audit())
        .await?;
    ensure!(bobs.agent_id == "a1", "{bobs:?}");
    let (_, again) = store
        .create_session(&with_home("alice", alice.id, false), &audit())
        .await?;
    ensure!(
        again.agent_id == "a1",
        "the home pins the session: {again:?}"
    );
    ensure!(store.agent_disconnected("a1", epoch).await?);
    let again = again.session_id.context("a session command")?;
    store
        .set_session_state(again, SessionState::Failed, None, Some("gone"))
        .await?;
    match store
        .create_session(&with_home("alice", alice.id, false), &audit())
        .await
    {
        Err(StoreError::HomeAgentUnavailable { agent_id, reason }) => {
            ensure!(
                agent_id == "a1" && reason.starts_with("is offline"),
                "{agent_id} {reason}"
            );
        }
        other => anyhow::bail!("the home's agent is offline, yet: {other:?}"),
    }
    // With shared storage any agent with user homes will do.
    let (_, shared) = store
        .create_session(&with_home("alice", alice.id, true), &audit())
        .await?;
    ensure!(shared.agent_id == "a2", "{shared:?}");
    Ok(())
}

pub async fn a_user_home_is_used_by_one_session_at_a_time(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register_with_homes(&*store, "a1", 50).await?;
    let alice = user(&*store, "alice", Role::User).await?;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            let new = with_home("alice", alice.id, false);
            tokio::spawn(async move { store.create_session(&new, &audit()).await })
        })
        .collect();
    let (mut created, mut refused) = (Vec::new(), 0);
    for task in tasks {
        match task.await? {
            Ok((session, _)) => created.push(session.id),
            Err(StoreError::HomeInUse { .. }) => refused += 1,
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(
        created.len() == 1 && refused == 5,
        "one of six concurrent launches gets the home: {created:?}, {refused} refused"
    );
    let holder = created[0];
    store
        .set_session_state(holder, SessionState::Running, None, None)
        .await?;
    store
        .set_session_state(holder, SessionState::Hibernated, None, None)
        .await?;
    match store
        .create_session(&with_home("alice", alice.id, false), &audit())
        .await
    {
        Err(e @ StoreError::HomeInUse { session_id }) => {
            ensure!(session_id == holder, "names the holder: {e}");
            ensure!(e.to_string().contains(&holder.to_string()), "{e}");
        }
        other => anyhow::bail!("a hibernated session still holds the home: {other:?}"),
    }
    // Sessions without the home, and shared homes, are not limited.
    store
        .create_session(&new_session_for("alice", alice.id), &audit())
        .await?;
    let (shared, _) = store
        .create_session(&with_home("alice", alice.id, true), &audit())
        .await?;
    for id in [holder, shared.id] {
        store
            .set_session_state(id, SessionState::Terminated, None, None)
            .await?;
    }
    store
        .create_session(&with_home("alice", alice.id, false), &audit())
        .await?;
    Ok(())
}

pub async fn deleting_a_user_asks_about_their_home(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register_with_homes(&*store, "a1", 10).await?;
    let alice = user(&*store, "alice", Role::User).await?;
    let bob = user(&*store, "bob", Role::User).await?;
    let carol = user(&*store, "carol", Role::User).await?;
    for (name, id) in [("alice", alice.id), ("bob", bob.id)] {
        let (session, _) = store
            .create_session(&with_home(name, id, false), &audit())
            .await?;
        store
            .set_session_state(session.id, SessionState::Terminated, None, None)
            .await?;
    }
    match store.delete_user("alice", &audit()).await {
        Err(e @ StoreError::HomeChoiceNeeded { .. }) => {
            ensure!(e.to_string().contains("home=keep"), "{e}");
        }
        other => anyhow::bail!("deleting a user with a home needs a choice: {other:?}"),
    }
    ensure!(store.get_user("alice").await.is_ok(), "nothing deleted");

    let (_, none) = store
        .delete_user_and_home("alice", HomeChoice::Keep, &audit())
        .await?;
    ensure!(none.is_none(), "keeping queues nothing");
    let command_id = Uuid::now_v7();
    let (_, removal) = store
        .delete_user_and_home("bob", HomeChoice::Delete { command_id }, &audit())
        .await?;
    let removal = removal.context("deleting the home queues a command")?;
    ensure!(
        removal.command_id == command_id
            && removal.agent_id == "a1"
            && removal.action == Action::DeleteUserHome
            && removal.session_id.is_none()
            && removal.payload["user_id"] == bob.id.to_string(),
        "{removal:?}"
    );
    // A user without a home needs no choice.
    store.delete_user("carol", &audit()).await?;
    let _ = carol;
    Ok(())
}
