//! Finished commands, announced to the API requests waiting for them.
//!
//! `GET /api/v1/commands/{id}?wait=SECS` answers as soon as the command is `completed` or
//! `failed` instead of making clients poll. The replica that records an outcome (the one holding
//! the agent, or any replica's sweep failing a stuck command) announces it here and to the other
//! replicas through the [`Cluster`]; what other replicas announce arrives on the channel
//! [`Outcomes::listen`] reads. A terminal command never changes again, so the announced copy is
//! final. Announcements only shorten waits: a waiter re-reads the database every
//! [`RECHECK`] and at the end of its wait, so one lost while Redis is down costs latency, never
//! a wrong answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use streamspace_proto::api::Command;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cluster::Cluster;
/// How often a waiter re-reads the database in case an announcement was lost.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

struct Slot {
    tx: watch::Sender<Option<Command>>,
    waiters: usize,
}

/// Who waits for which command on this replica.
pub(crate) struct Outcomes {
    slots: Mutex<HashMap<Uuid, Slot>>,
    cluster: Arc<dyn Cluster>,
}

impl Outcomes {
    pub fn new(cluster: Arc<dyn Cluster>) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::default(),
            cluster,
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
        self.cluster.announce_finished(command).await;
    }

    /// Wakes this replica's waiters for the finished commands other replicas announce, until
    /// `stop` or until nothing can announce any more.
    pub async fn listen(&self, mut finished: mpsc::Receiver<Command>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = finished.recv() => match next {
                    Some(command) => self.deliver(&command),
                    None => return,
                },
            }
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

    fn single() -> Arc<dyn Cluster> {
        let replica = crate::cluster::ReplicaInfo {
            id: "r1".into(),
            address: "127.0.0.1:1".into(),
            tls: false,
            started_at: chrono::Utc::now(),
        };
        Arc::new(crate::cluster::Single::new(
            Arc::new(replica),
            Arc::default(),
        ))
    }

    #[tokio::test]
    async fn waiters_hear_of_their_command_and_leave_nothing_behind() {
        let outcomes = Outcomes::new(single());
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut first = outcomes.watch(id);
        let mut second = outcomes.watch(id);
        assert_eq!(outcomes.watched(), 1);
        outcomes.deliver(&command(other, CommandStatus::Completed));
        let pending = tokio::time::timeout(Duration::from_millis(20), first.finished()).await;
        assert!(pending.is_err(), "woken by another command's outcome");
        // Announced by another replica: through the channel `serve` wires.
        let (tx, rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let listening = tokio::spawn({
            let (outcomes, stop) = (outcomes.clone(), stop.clone());
            async move { outcomes.listen(rx, stop).await }
        });
        tx.send(command(id, CommandStatus::Completed))
            .await
            .expect("the listener runs");
        for waiter in [&mut first, &mut second] {
            let done = waiter.finished().await;
            assert_eq!(done.command_id, id);
            assert_eq!(done.status, CommandStatus::Completed);
        }
        stop.cancel();
        listening.await.expect("the listener stops");
        drop(first);
        assert_eq!(outcomes.watched(), 1, "the second waiter still waits");
        drop(second);
        assert_eq!(outcomes.watched(), 0);
    }
}
