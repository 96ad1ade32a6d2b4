//! A replica without Redis: no other replica to tell or to ask.
//!
//! Several such replicas may still share one PostgreSQL database: each delivers to the agents
//! it holds, found by its sweep.

use std::sync::Arc;

use async_trait::async_trait;
use streamspace_proto::api::Command;
use streamspace_proto::wire::TunnelOpen;
use tokio_util::sync::CancellationToken;

use super::{Cluster, ReplicaInfo, ReplicaStatus, ReplicasUnavailable};
use crate::hub::{DeliveryError, Hub, LocalHub};

pub(crate) struct Single {
    replica: Arc<ReplicaInfo>,
    hub: Arc<LocalHub>,
}

impl Single {
    pub fn new(replica: Arc<ReplicaInfo>, hub: Arc<LocalHub>) -> Self {
        Self { replica, hub }
    }
}

#[async_trait]
impl Cluster for Single {
    /// The in-memory hub alone.
    fn hub(&self) -> Arc<dyn Hub> {
        self.hub.clone()
    }

    fn redis_health(&self) -> Option<&'static str> {
        None
    }

    /// The command waits in the database for the agent.
    async fn wake_owner(&self, _agent_id: &str) {}

    async fn announce_finished(&self, _command: &Command) {}

    async fn replicas(
        &self,
        agents_here: usize,
    ) -> Result<Vec<ReplicaStatus>, ReplicasUnavailable> {
        Ok(vec![self.replica.status(agents_here)])
    }

    async fn open_tunnel(&self, agent_id: &str, _open: TunnelOpen) -> Result<(), String> {
        Err(DeliveryError::NotConnected(agent_id.to_owned()).to_string())
    }

    async fn viewer_replica(&self, _token: &str) -> Option<String> {
        None
    }

    async fn run(&self, _stop: CancellationToken) {}
}
