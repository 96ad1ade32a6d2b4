//! Finished commands, announced to the API requests waiting for them.
//!
//! `GET /api/v1/commands/{id}?wait=SECS` answers as soon as the command is `completed` or
//! `failed` instead of making clients poll. The replica that records an outcome (the one holding
//! the agent, or any replica's sweep failing a stuck command) announces it here; in Redis mode it
//! also publishes it on [`CHANNEL`], which every replica reads, so a waiter on another replica
//! hears of it too. A terminal command never changes again, so the announced copy is final.
//! Announcements only shorten waits: a waiter re-reads the database every
//! [`RECHECK`] and at the end of its wait, so one lost while Redis is down costs latency, never
//! a wrong answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use streamspace_proto::api::Command;
use tokio::sync::watch;
use uuid::Uuid;

use crate::cluster::redis::link::RedisLink;

/// The Redis channel every replica reads finished commands from.
pub(crate) const CHANNEL: &str = "streamspace:commands:finished";
/// How often a waiter re-reads the database in case an announcement was lost.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

struct Slot {
    tx: watch::Sender<Option<Command>>,
    waiters: usize,
}

/// Who waits for which command on this replica.
#[derive(Default)]
pub(crate) struct Outcomes {
    slots: Mutex<HashMap<Uuid, Slot>>,
    redis: Option<Arc<RedisLink>>,
}

impl Outcomes {
    pub fn new(redis: Option<Arc<RedisLink>>) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::default(),
            redis,
        })
    }

    /// Starts waiting for `command_id`; register before reading the command, so an outcome
    /// recorded in between is not missed.
    pub fn watch(self: &Arc<Self>, command_id: Uuid) -> Waiter {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(command_id).or_insert_with(|| Slot {
            tx: watch::channel(None).0,
            waiters: 0,
        });
        slot.waiters += 1;
        Waiter {
            rx: slot.tx.subscribe(),
            command_id,
            outcomes: Arc::downgrade(self),
        }
    }

    /// Wakes this replica's waiters for `command` (terminal).
    pub fn deliver(&self, command: &Command) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(&command.command_id) {
            slot.tx.send_replace(Some(command.clone()));
        }
    }

    /// Announces a command that just became terminal: here, and to the other replicas.
    pub async fn announce(&self, command: &Command) {
        self.deliver(command);
        let Some(link) = &self.redis else { return };
        let payload = match serde_json::to_string(command) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(error = %e, "could not encode a finished command");
                return;
            }
        };
        let published = link
            .with_conn(|mut conn| async move {
                redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        if let Err(e) = published {
            tracing::debug!(error = %e, "announcing a finished command failed; waiters re-read the database");
        }
    }

    /// A finished command published by some replica (possibly this one).
    pub fn on_published(&self, payload: &str) {
        match serde_json::from_str::<Command>(payload) {
            Ok(command) if command.status.is_terminal() => self.deliver(&command),
            Ok(command) => tracing::warn!(
                command_id = %command.command_id,
                "ignoring an announced command that is not finished"
            ),
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed finished-command message"),
        }
    }

    fn release(&self, command_id: Uuid) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&command_id) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                slots.remove(&command_id);
            }
        }
    }

    /// Commands someone waits for here (tests, metrics).
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One waiting request; stops waiting when dropped.
pub(crate) struct Waiter {
    rx: watch::Receiver<Option<Command>>,
    command_id: Uuid,
    outcomes: Weak<Outcomes>,
}

impl Waiter {
    /// The finished command, once announced. Never resolves if nothing can announce it any
    /// more (the registry went away): the waiter's own re-reads decide then.
    pub async fn finished(&mut self) -> Command {
        let announced = match self.rx.wait_for(Option::is_some).await {
            Ok(announced) => announced.clone(),
            Err(_) => None,
        };
        match announced {
            Some(command) => command,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(outcomes) = self.outcomes.upgrade() {
            outcomes.release(self.command_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use streamspace_proto::api::{Action, CommandStatus};

    fn command(id: Uuid, status: CommandStatus) -> Command {
        serde_json::from_value(json!({
            "id": 1,
            "command_id": id,
            "agent_id": "a1",
            "session_id": null,
            "action": Action::Ping,
            "payload": {},
            "status": status,
            "result": {"pong": true},
            "error_message": null,
            "attempts": 1,
            "created_at": "2026-11-24T00:00:00Z",
            "updated_at": "2026-11-24T00:00:00Z",
            "sent_at": null,
            "acknowledged_at": null,
            "completed_at": null
        }))
        .expect("a valid command")
    }

    #[tokio::test]
    async fn waiters_hear_of_their_command_and_leave_nothing_behind() {
        let outcomes = Outcomes::new(None);
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut first = outcomes.watch(id);
        let mut second = outcomes.watch(id);
        assert_eq!(outcomes.watched(), 1);
        outcomes.deliver(&command(other, CommandStatus::Completed));
        let pending = tokio::time::timeout(Duration::from_millis(20), first.finished()).await;
        assert!(pending.is_err(), "woken by another command's outcome");
        outcomes.on_published(
            &serde_json::to_string(&command(id, CommandStatus::Completed)).expect("encodes"),
        );
        for waiter in [&mut first, &mut second] {
            let done = waiter.finished().await;
            assert_eq!(done.command_id, id);
            assert_eq!(done.status, CommandStatus::Completed);
        }
        drop(first);
        assert_eq!(outcomes.watched(), 1, "the second waiter still waits");
        drop(second);
        assert_eq!(outcomes.watched(), 0);
    }

    #[tokio::test]
    async fn unfinished_or_malformed_announcements_are_ignored() {
        let outcomes = Outcomes::new(None);
        let id = Uuid::now_v7();
        let mut waiter = outcomes.watch(id);
        outcomes.on_published("not json");
        outcomes.on_published(
            &serde_json::to_string(&command(id, CommandStatus::Sent)).expect("encodes"),
        );
        let pending = tokio::time::timeout(Duration::from_millis(20), waiter.finished()).await;
        assert!(pending.is_err(), "woken by an unfinished command");
    }
}
