//! Everything about other replicas, behind one interface: [`Cluster`].
//!
//! A replica alone ([`single`], no `--redis-url`) has no one to tell: its hub is the in-memory
//! [`LocalHub`], commands for agents it does not hold wait in the database for the agent (or
//! another replica's sweep), and the replica list is itself. With Redis ([`redis`]) replicas
//! record which agent each holds, wake each other through per-replica channels, announce
//! finished commands, revocations, revoked share links and sessions that ended, list each
//! other, open viewer streams through each other, and list and disconnect each other's viewers.
//!
//! The rest of the server — API, dispatcher, tunnel, health, the agent endpoint — asks this
//! interface and never looks at Redis. What other replicas tell this one arrives as [`Events`]
//! on bounded channels that `serve` wires once to the dispatcher and to the waiting requests,
//! so nothing here knows those modules.

mod peer;
mod redis;
mod replicas;
mod single;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use streamspace_proto::api::{Command, Viewer};
use streamspace_proto::wire::{TransferOpen, TunnelOpen};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::hub::{Hub, LocalHub};
use crate::keyring::{Keyring, ReplicaProofs};

pub(crate) use peer::{
    AUTH_HEADER, CLOSE_VIEWER_PROOF, CloseViewer, Peer, RemoteOpen, RemoteTransfer, VIEWERS_PROOF,
    proof, verify,
};
pub use redis::InvalidRedisUrl;
pub use replicas::ReplicaStatus;
pub(crate) use replicas::{ReplicaInfo, ReplicasUnavailable};
pub(crate) use single::Single;

/// Room in each event channel. Senders wait when it is full (the readers only hand each event
/// on, without waiting), so nothing is dropped.
pub(crate) const EVENT_QUEUE: usize = 1024;

/// What other replicas tell this one, wired once in `serve`.
pub(crate) struct Events {
    /// Agents held here that have work in the database: named in a wake-up from another
    /// replica, or every agent held here after (re)subscribing, when wake-ups may have been
    /// missed. The dispatcher delivers for them.
    pub wakes: mpsc::Sender<String>,
    /// Commands some replica (possibly this one) recorded as finished; requests waiting for
    /// them answer at once.
    pub finished: mpsc::Sender<Command>,
    /// Some replica revoked credentials (or the link was down and may have missed that):
    /// forget every cached one; with a user, that user lost access: close their viewers.
    pub revoked: mpsc::Sender<Option<Uuid>>,
    /// A session left `running` (on some replica's word): close its viewers here, with this
    /// reason.
    pub ended: mpsc::Sender<(Uuid, String)>,
    /// A share link stopped opening anything (revoked on some replica): close the viewers
    /// that came through it here, with this reason.
    pub unshared: mpsc::Sender<(Uuid, String)>,
}

/// The other replicas, as the rest of the server sees them.
#[async_trait]
pub(crate) trait Cluster: Send + Sync + 'static {
    /// The hub agents attach to: with Redis it also records which replica holds each agent.
    fn hub(&self) -> Arc<dyn Hub>;

    /// The `redis` field of the readiness report: `None` without Redis, else `ok` or `degraded`.
    fn redis_health(&self) -> Option<&'static str>;

    /// Wakes the replica holding `agent_id` (not this one) to deliver its commands. Whatever
    /// fails is left to the owner's sweep.
    async fn wake_owner(&self, agent_id: &str);

    /// Tells the other replicas that `command` finished (terminal), for their waiting requests.
    async fn announce_finished(&self, command: &Command);

    /// Tells the other replicas that credentials were revoked (`why`, for their logs), so
    /// they forget what they cached, and, when `user` lost access altogether, close that
    /// user's viewers. This replica does both itself.
    async fn announce_revoked(&self, why: &str, user: Option<Uuid>);

    /// Tells the other replicas to close the agent connections `revoked` names (a revoked key,
    /// a deleted agent). This replica closes its own itself.
    async fn announce_agent_revoked(&self, revoked: &AgentRevoked);

    /// Tells the other replicas that `session_id` left `running`, so they close its viewers
    /// with `reason`. This replica closes its own itself.
    async fn announce_session_ended(&self, session_id: Uuid, reason: &str);

    /// Tells the other replicas that share link `share_id` was revoked, so they close the
    /// viewers that came through it with `reason` at once. This replica closes its own itself;
    /// an announcement lost while Redis is away is made up for by each replica's check of its
    /// viewers' links (`crate::streams::close_unshared`).
    async fn announce_share_revoked(&self, share_id: Uuid, reason: &str);

    /// The viewers of `session_id` that the other live replicas carry, as each lists its own.
    /// A replica that cannot be asked is left out (and logged): the list is what could be seen.
    async fn viewers_elsewhere(&self, session_id: Uuid) -> Vec<Viewer>;

    /// Asks the other live replicas to close viewer stream `viewer_id` of `session_id` with
    /// `reason`; whether one of them carried it.
    async fn close_viewer_elsewhere(&self, session_id: Uuid, viewer_id: Uuid, reason: &str)
    -> bool;

    /// The live replicas, this one included, given how many agents this one holds.
    async fn replicas(&self, agents_here: usize)
    -> Result<Vec<ReplicaStatus>, ReplicasUnavailable>;

    /// Asks the replica holding `agent_id` (not this one) to send it `open`, recording that the
    /// viewer of the stream is here. Errors say why the stream cannot be opened.
    async fn open_tunnel(&self, agent_id: &str, open: TunnelOpen) -> Result<(), String>;

    /// Asks the replica holding `agent_id` (not this one) to send it the transfer `open`,
    /// recording that the transfer's request is here (the data connection finds it as a
    /// viewer's does). Errors say why the transfer cannot be opened.
    async fn open_transfer(&self, agent_id: &str, open: TransferOpen) -> Result<(), String>;

    /// Where the replica holding the viewer of stream `token` is reached, if another one.
    async fn viewer_replica(&self, token: &str) -> Option<Peer>;

    /// Keeps the link to the other replicas up until `stop`.
    async fn run(&self, stop: CancellationToken);
}

/// Agent connections that must end on whichever replica holds them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AgentRevoked {
    /// Every connection authenticated with this agent key (revoked).
    Key(Uuid),
    /// The agent's connection (the agent was deleted, its keys revoked with it).
    Agent(String),
}

impl AgentRevoked {
    /// The close reason the agent is given (with code 1008).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Key(_) => "agent key revoked",
            Self::Agent(_) => "agent deleted",
        }
    }

    /// Closes what this names among the connections `hub` holds.
    pub async fn close_in(&self, hub: &dyn Hub) {
        let code = streamspace_proto::wire::close_code::POLICY;
        match self {
            Self::Key(id) => hub.close_key(*id, code, self.reason()).await,
            Self::Agent(agent_id) => hub.close_agent(agent_id, code, self.reason()).await,
        }
    }
}

/// What [`start`] needs.
pub(crate) struct Setup {
    /// `--redis-url` and its credentials, if any.
    pub redis: Option<crate::config::RedisConfig>,
    /// `--ca-cert`: the CA that Redis's TLS certificates are verified against.
    pub ca_cert: Option<std::path::PathBuf>,
    pub replica: Arc<ReplicaInfo>,
    pub heartbeat: Duration,
    /// Signs calls between replicas.
    pub replica_proofs: Keyring<ReplicaProofs>,
    /// How long asking another replica to open a stream may take.
    pub open_timeout: Duration,
    /// Calls to other replicas: over TLS to those that serve it, verified as
    /// `crate::tls::peer_config` says.
    pub peer_http: reqwest::Client,
}

/// The cluster of this replica: single without a Redis URL, else Redis.
pub(crate) fn start(setup: Setup, events: Events) -> Result<Arc<dyn Cluster>, InvalidRedisUrl> {
    let local = Arc::new(LocalHub::new());
    Ok(match &setup.redis {
        None => Arc::new(Single::new(setup.replica, local)),
        Some(config) => {
            let ca = match &setup.ca_cert {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    InvalidRedisUrl(format!("reading --ca-cert {}: {e}", path.display()))
                })?),
                None => None,
            };
            let cluster = redis::RedisCluster::new(config, ca.as_deref(), &setup, local, events)?;
            Arc::new(cluster)
        }
    })
}
