//! The hub of a replica that shares its agents through Redis: the [`LocalHub`] of this replica's
//! own connections, plus ownership records (see [`super::routing`]).
//!
//! Attaching a connection claims the agent's owner record at the connection's epoch; detaching
//! it releases the record only if it is still exactly ours. Redis failures never fail an
//! attach or a send: the local connection works regardless, and the supervisor re-publishes
//! every record when Redis is back.

use std::sync::Arc;

use async_trait::async_trait;
use streamspace_proto::wire::ServerMessage;
use uuid::Uuid;

use super::link::RedisLink;
use super::{replicas, routing};
use crate::hub::{AgentConnection, DeliveryError, Hub, LocalHub, StaleConnection};

pub(crate) struct RedisHub {
    local: Arc<LocalHub>,
    link: Arc<RedisLink>,
}

impl RedisHub {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self {
            local: link.local.clone(),
            link,
        }
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
        let _ = replicas::announce(&self.link, self.local.held().len()).await;
        Ok(())
    }

    async fn detach(&self, agent_id: &str, conn_id: u64) -> bool {
        let epoch = self.local.epoch_of(agent_id);
        let removed = self.local.detach(agent_id, conn_id).await;
        if let (true, Some(epoch)) = (removed, epoch) {
            routing::release(&self.link, agent_id, epoch).await;
            let _ = replicas::announce(&self.link, self.local.held().len()).await;
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
