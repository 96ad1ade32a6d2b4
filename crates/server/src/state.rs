//! What every handler and background task of one replica shares.

use std::sync::Arc;

use streamspace_store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::actor::CredentialCache;
use crate::cluster::Cluster;
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
    /// The other replicas.
    pub cluster: Arc<dyn Cluster>,
    /// Viewer streams of this replica.
    pub tunnels: Arc<crate::streams::Tunnels>,
    /// API requests waiting for commands to finish.
    pub outcomes: Arc<crate::outcomes::Outcomes>,
    /// Recently resolved credentials.
    pub credentials: Arc<CredentialCache>,
    /// Sign-in failures, per account and per client address.
    pub throttle: Arc<crate::signin::Throttle>,
    /// Single sign-on providers, discovered at start.
    pub oidc: Arc<crate::oidc::Providers>,
}

impl AppState {
    /// After a change that may take a credential's power away: forget the cached ones here at
    /// once (and, when `user` lost access altogether, close their viewers here), and tell the
    /// other replicas to do the same.
    pub async fn revoked(&self, why: &str, user: Option<Uuid>) {
        forget_revoked(&self.credentials, &self.tunnels, user);
        self.cluster.announce_revoked(why, user).await;
    }

    /// Gets a command just created for `agent_id` moving, wherever the agent is connected.
    pub async fn route_to(&self, agent_id: &str) {
        crate::metrics::command("pending");
        if self.hub.holds(agent_id).await {
            crate::metrics::delivery("local");
            self.dispatcher.wake(agent_id, false);
        } else {
            self.cluster.wake_owner(agent_id).await;
        }
    }
}

/// What a replica does on hearing of a revocation: forget every cached credential; when a user
/// lost access altogether, close their viewers (1008, policy violation, with a reason the web
/// UI shows).
pub(crate) fn forget_revoked(
    credentials: &CredentialCache,
    tunnels: &crate::streams::Tunnels,
    user: Option<Uuid>,
) {
    credentials.forget_all();
    if let Some(user) = user {
        let closed = tunnels.close_user(user, 1008, "your access was revoked");
        if closed > 0 {
            tracing::info!(user_id = %user, viewers = closed, "closed the viewers of a user who lost access");
        }
    }
}
