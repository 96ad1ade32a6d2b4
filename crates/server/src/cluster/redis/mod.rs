//! Several replicas sharing their agents through Redis.
//!
//! Redis only accelerates: PostgreSQL stays the source of truth, and whatever is lost while
//! Redis is away (a wake-up, an announcement) is found again by the sweep or by a re-read.
//! - [`target`]: where Redis is (directly or through Sentinels), with TLS and credentials;
//! - [`link`]: the one shared connection, the supervisor that keeps it up and reads this
//!   replica's channels;
//! - [`hub`]: the local hub plus agent ownership records;
//! - [`routing`]: ownership records (with the epoch fencing) and wake-ups between replicas;
//! - [`replicas`]: each replica's record, for the replica list and for calls between replicas;
//! - [`finished`]: finished commands announced to every replica;
//! - [`revoked`]: revoked credentials (and revoked agent keys, deleted agents) announced to every
//!   replica;
//! - [`ended`]: sessions that left `running`, announced to every replica;
//! - [`unshared`]: revoked share links, announced to every replica;
//! - [`tunnels`]: viewer streams opened through the agent's replica;
//! - [`viewers`]: the viewers other replicas carry, listed and disconnected by asking them.

mod closing;
mod finished;
mod hub;
mod link;
mod replicas;
mod revoked;
mod routing;
mod target;
mod tunnels;
mod viewers;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use streamspace_proto::api::{Command, Viewer};
use streamspace_proto::wire::{TransferOpen, TunnelOpen};
use tokio_util::sync::CancellationToken;

pub use link::InvalidRedisUrl;

use super::{Cluster, Events, ReplicaStatus, ReplicasUnavailable, Setup};
use crate::hub::{Hub, LocalHub};
use crate::keyring::{Keyring, ReplicaProofs};
use link::RedisLink;
use target::Target;

/// The Redis implementation of [`Cluster`].
pub(crate) struct RedisCluster {
    link: Arc<RedisLink>,
    hub: Arc<hub::RedisHub>,
    replica_proofs: Keyring<ReplicaProofs>,
    open_timeout: Duration,
    /// Calls to other replicas, over TLS to those that serve it.
    http: reqwest::Client,
}

impl RedisCluster {
    /// A cluster through the Redis `config` names; `ca` is the PEM of `--ca-cert`, if given.
    pub fn new(
        config: &crate::config::RedisConfig,
        ca: Option<&[u8]>,
        setup: &Setup,
        local: Arc<LocalHub>,
        events: Events,
    ) -> Result<Self, InvalidRedisUrl> {
        let target = Target::new(config, ca)?;
        let link = Arc::new(RedisLink::new(
            target,
            setup.replica.clone(),
            local,
            setup.heartbeat,
            events,
        ));
        Ok(Self {
            hub: Arc::new(hub::RedisHub::new(link.clone())),
            link,
            replica_proofs: setup.replica_proofs.clone(),
            open_timeout: setup.open_timeout,
            http: setup.peer_http.clone(),
        })
    }
}

impl RedisCluster {
    /// What calling another replica needs.
    fn caller(&self) -> tunnels::Caller<'_> {
        tunnels::Caller {
            http: &self.http,
            replica_proofs: &self.replica_proofs,
            open_timeout: self.open_timeout,
        }
    }
}

#[async_trait]
impl Cluster for RedisCluster {
    fn hub(&self) -> Arc<dyn Hub> {
        self.hub.clone()
    }

    fn redis_health(&self) -> Option<&'static str> {
        Some(if self.link.is_up() { "ok" } else { "degraded" })
    }

    async fn wake_owner(&self, agent_id: &str) {
        routing::forward(&self.link, agent_id, 0).await;
    }

    async fn announce_finished(&self, command: &Command) {
        finished::publish(&self.link, command).await;
    }

    async fn announce_revoked(&self, why: &str, user: Option<uuid::Uuid>) {
        revoked::publish(&self.link, why, user).await;
    }

    async fn announce_agent_revoked(&self, revoked: &super::AgentRevoked) {
        revoked::publish_agent(&self.link, revoked).await;
    }

    async fn announce_session_ended(&self, session_id: uuid::Uuid, reason: &str) {
        closing::ENDED.publish(&self.link, session_id, reason).await;
    }

    async fn announce_share_revoked(&self, share_id: uuid::Uuid, reason: &str) {
        closing::UNSHARED
            .publish(&self.link, share_id, reason)
            .await;
    }

    async fn viewers_elsewhere(&self, session_id: uuid::Uuid) -> Vec<Viewer> {
        viewers::list_elsewhere(&self.link, &self.caller(), session_id).await
    }

    async fn close_viewer_elsewhere(
        &self,
        session_id: uuid::Uuid,
        viewer_id: uuid::Uuid,
        reason: &str,
    ) -> bool {
        viewers::close_elsewhere(&self.link, &self.caller(), session_id, viewer_id, reason).await
    }

    async fn replicas(
        &self,
        agents_here: usize,
    ) -> Result<Vec<ReplicaStatus>, ReplicasUnavailable> {
        let me = &self.link.replica;
        let mut replicas = replicas::list_from_redis(&self.link)
            .await
            .map_err(|e| ReplicasUnavailable(e.to_string()))?;
        // This replica's own entry is always current.
        replicas.retain(|r| r.id != me.id);
        replicas.push(me.status(agents_here));
        replicas.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(replicas)
    }

    async fn open_tunnel(&self, agent_id: &str, open: TunnelOpen) -> Result<(), String> {
        let caller = self.caller();
        tunnels::open_elsewhere(&self.link, &caller, agent_id, open).await
    }

    async fn open_transfer(&self, agent_id: &str, open: TransferOpen) -> Result<(), String> {
        let caller = self.caller();
        tunnels::open_transfer_elsewhere(&self.link, &caller, agent_id, open).await
    }

    async fn viewer_replica(&self, token: &str) -> Option<super::Peer> {
        tunnels::viewer_replica(&self.link, token).await
    }

    async fn run(&self, stop: CancellationToken) {
        self.link.clone().supervise(stop).await;
    }
}
