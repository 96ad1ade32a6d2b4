//! What every handler and background task of one replica shares.

use std::sync::Arc;

use streamspace_store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::redis::link::RedisLink;
use crate::cluster::replicas::ReplicaInfo;
use crate::config::ServerConfig;
use crate::dispatcher::Dispatcher;
use crate::hub::Hub;
use crate::keys::KeyHasher;

/// Shared state, cheap to clone (axum's `State`).
#[derive(Clone)]
pub(crate) struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub hasher: KeyHasher,
    pub hub: Arc<dyn Hub>,
    pub dispatcher: Arc<Dispatcher>,
    /// Cancelled when the replica shuts down.
    pub shutdown: CancellationToken,
    /// Free agent connection slots.
    pub agent_slots: Arc<Semaphore>,
    /// Agent connections and dispatcher work, awaited on shutdown.
    pub tasks: TaskTracker,
    /// Who this replica is.
    pub replica: Arc<ReplicaInfo>,
    /// The link to Redis, in Redis mode.
    pub redis: Option<Arc<RedisLink>>,
    /// Viewer streams of this replica.
    pub tunnels: Arc<crate::tunnel::Tunnels>,
    /// API requests waiting for commands to finish.
    pub outcomes: Arc<crate::outcomes::Outcomes>,
}

impl AppState {
    /// Gets a command just created for `agent_id` moving, wherever the agent is connected.
    pub async fn route_to(&self, agent_id: &str) {
        crate::metrics::command("pending");
        crate::cluster::redis::routing::route(
            self.redis.as_deref(),
            self.hub.as_ref(),
            &self.dispatcher,
            agent_id,
        )
        .await;
    }
}
