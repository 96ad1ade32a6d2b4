//! A replica without Redis: no other replica to tell or to ask.
//!
//! Several such replicas may still share one PostgreSQL database: each delivers to the agents
//! it holds, found by its sweep.

use std::sync::Arc;

use async_trait::async_trait;
use streamspace_proto::api::{Command, Viewer};
use streamspace_proto::wire::{TransferOpen, TunnelOpen};
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

    async fn announce_revoked(&self, _why: &str, _user: Option<uuid::Uuid>) {}

    async fn announce_session_ended(&self, _session_id: uuid::Uuid, _reason: &str) {}

    async fn announce_agent_revoked(&self, _revoked: &super::AgentRevoked) {}

    async fn announce_share_revoked(&self, _share_id: uuid::Uuid, _reason: &str) {}

    /// No other replica carries viewers.
    async fn viewers_elsewhere(&self, _session_id: uuid::Uuid) -> Vec<Viewer> {
        Vec::new()
    }

    async fn close_viewer_elsewhere(
        &self,
        _session_id: uuid::Uuid,
        _viewer_id: uuid::Uuid,
        _reason: &str,
    ) -> bool {
        false
    }

    async fn open_tunnel(&self, agent_id: &str, _open: TunnelOpen) -> Result<(), String> {
        Err(DeliveryError::NotConnected(agent_id.to_owned()).to_string())
    }

    async fn open_transfer(&self, agent_id: &str, _open: TransferOpen) -> Result<(), String> {
        Err(DeliveryError::NotConnected(agent_id.to_owned()).to_string())
    }

    async fn viewer_replica(&self, _token: &str) -> Option<super::Peer> {
        None
    }

    async fn run(&self, _stop: CancellationToken) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[tokio::test]
    async fn alone_a_replica_lists_itself_and_reaches_no_other_agent() {
        let replica = ReplicaInfo {
            id: "r1".into(),
            address: "10.0.0.1:8080".into(),
            tls: false,
            started_at: chrono::Utc::now(),
        };
        let single = Single::new(Arc::new(replica), Arc::default());
        let listed = single.replicas(3).await.expect("no Redis to be down");
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id.as_str(), listed[0].agents), ("r1", 3));
        assert_eq!(single.redis_health(), None, "readiness reports no Redis");
        let open = TunnelOpen {
            tunnel_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            token: "sst_x".into(),
        };
        assert_eq!(
            single.open_tunnel("a1", open).await,
            Err("agent a1 is not connected to this replica".to_owned()),
            "the viewer hears what the hub said"
        );
        assert_eq!(single.viewer_replica("sst_x").await, None);
        let session = Uuid::now_v7();
        assert!(single.viewers_elsewhere(session).await.is_empty());
        assert!(
            !single
                .close_viewer_elsewhere(session, Uuid::now_v7(), "kicked")
                .await
        );
    }
}
