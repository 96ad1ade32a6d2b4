//! The hub of a replica that shares its agents through Redis: the [`LocalHub`] of this replica's
//! own connections, plus ownership records (see [`super::routing`]).
//!
//! Attaching a connection claims the agent's owner record at the connection's epoch; detaching
//! it releases the record only if it is still exactly ours. Redis failures never fail an
//! attach or a send: the local connection works regardless, and the supervisor re-publishes
//! every record when Redis is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use streamspace_proto::wire::ServerMessage;
use uuid::Uuid;

use super::link::RedisLink;
use super::{replicas, routing};
use crate::hub::{AgentConnection, DeliveryError, Hub, LocalHub, StaleConnection};

pub(crate) struct RedisHub {
    local: Arc<LocalHub>,
    link: Arc<RedisLink>,
    announcer: Arc<Announcer>,
}

impl RedisHub {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self {
            local: link.local.clone(),
            announcer: Arc::new(Announcer {
                link: link.clone(),
                running: AtomicBool::new(false),
                dirty: AtomicBool::new(false),
            }),
            link,
        }
    }
}

/// Re-publishes the replica's record (its count of agents) after attaches and detaches, one
/// write at a time: a storm of ten thousand agents arriving costs a few writes, not one Redis
/// round trip each in the path of every registration.
struct Announcer {
    link: Arc<RedisLink>,
    /// A task is writing the record.
    running: AtomicBool,
    /// The count changed since the running task last read it.
    dirty: AtomicBool,
}

impl Announcer {
    /// Notes a change; starts the writing task unless one runs (it will write this change).
    fn changed(self: &Arc<Self>) {
        self.dirty.store(true, Ordering::Release);
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                while this.dirty.swap(false, Ordering::AcqRel) {
                    let _ = replicas::announce(&this.link, this.link.local.count()).await;
                }
                this.running.store(false, Ordering::Release);
                // A change noted after the last write, by a caller that saw this task running,
                // is this task's to write, unless another task has started since.
                if !this.dirty.load(Ordering::Acquire) || this.running.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }
}

#[async_trait]
impl Hub for RedisHub {
    async fn attach(&self, conn: AgentConnection) -> Result<(), StaleConnection> {
        let agent_id = conn.agent_id.clone();
        let epoch = conn.epoch;
        self.local.attach(conn).await?;
        match routing::claim(&self.link, &agent_id, epoch).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(%agent_id, epoch,
                "a newer connection of this agent owns it on another replica"),
            Err(e) => tracing::debug!(%agent_id, error = %e,
                "recording agent ownership failed; re-published when Redis returns"),
        }
        self.announcer.changed();
        Ok(())
    }

    async fn detach(&self, agent_id: &str, conn_id: u64) -> bool {
        let epoch = self.local.epoch_of(agent_id);
        let removed = self.local.detach(agent_id, conn_id).await;
        if let (true, Some(epoch)) = (removed, epoch) {
            routing::release(&self.link, agent_id, epoch).await;
            self.announcer.changed();
        }
        removed
    }

    async fn send(&self, agent_id: &str, msg: ServerMessage) -> Result<(), DeliveryError> {
        self.local.send(agent_id, msg).await
    }

    async fn holds(&self, agent_id: &str) -> bool {
        self.local.holds(agent_id).await
    }

    async fn close_agent(&self, agent_id: &str, code: u16, reason: &str) {
        self.local.close_agent(agent_id, code, reason).await;
    }

    async fn close_key(&self, key_id: Uuid, code: u16, reason: &str) {
        self.local.close_key(key_id, code, reason).await;
    }

    async fn shutdown_all(&self, reason: &str) {
        let held = self.local.held();
        self.local.shutdown_all(reason).await;
        // Release at once so routing stops pointing here while the agents move.
        for (agent_id, epoch) in held {
            routing::release(&self.link, &agent_id, epoch).await;
        }
        replicas::withdraw(&self.link).await;
    }

    async fn agents(&self) -> Vec<String> {
        self.local.agents().await
    }
}
