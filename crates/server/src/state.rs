//! What every handler and background task of one replica shares.

use std::sync::Arc;

use streamspace_proto::api::{Command, CommandStatus, SessionState};
use streamspace_proto::tunnel::close_code;
use streamspace_store::Store;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::actor::CredentialCache;
use crate::cluster::Cluster;
use crate::config::ServerConfig;
use crate::dispatcher::{DispatchContext, Dispatcher};
use crate::error::ServerError;
use crate::hub::Hub;
use crate::keyring::Keys;

/// Shared state, cheap to clone (axum's `State`): one reference count, however many parts
/// it has (every request clones it several times).
#[derive(Clone)]
pub(crate) struct AppState(Arc<Parts>);

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub(crate) struct Parts {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    /// One key per purpose, from the master secret.
    pub keys: Arc<Keys>,
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
    /// TLS for connections to other replicas that serve it (see `crate::tls::peer_config`).
    pub peer_tls: Arc<rustls::ClientConfig>,
    /// Records viewings; `None` when no recording store is configured.
    pub recorder: Option<Arc<crate::recording::Recorder>>,
    /// Agent registrations, written to the database in batches (see `crate::batch`).
    pub registrar: Arc<Registrar>,
    /// Agent keys of connecting agents, looked up in batches (by their hash under the current
    /// credential key).
    pub agent_keys: Arc<crate::batch::Batcher<String, Option<streamspace_store::ApiKeyRecord>>>,
    /// Agent heartbeats (with the check of each agent's key), written in batches.
    pub heartbeats: Arc<
        crate::batch::Batcher<
            streamspace_store::AgentHeartbeat,
            streamspace_store::HeartbeatOutcome,
        >,
    >,
    /// The live sessions of (re)connecting agents, read in batches for their reconciliation.
    pub live_sessions: Arc<crate::batch::Batcher<String, Vec<streamspace_proto::api::Session>>>,
    /// Command writes carried in batches (the dispatcher shares them).
    pub commands: Arc<crate::batch::CommandBatches>,
    /// What the dispatcher's work needs, for a request that sends a command itself.
    pub delivery: DispatchContext,
}

/// Registers agent connections in batches: one statement for every agent that registers while
/// the previous batch is being written.
pub(crate) type Registrar = crate::batch::Batcher<streamspace_store::AgentRegistration, i64>;

/// The most requests one batch of [`AppState::registrar`], [`AppState::agent_keys`],
/// [`AppState::heartbeats`] or [`AppState::live_sessions`] carries.
const AGENT_BATCH: usize = 512;

/// A batcher for the work of connecting and connected agents (see [`AGENT_BATCH`]): one batch
/// in flight, so that a reconnect storm gathers into as few statements as it can.
fn agent_batcher<Req, Resp, F, Fut>(
    store: &Arc<dyn Store>,
    shutdown: &CancellationToken,
    call: F,
) -> Arc<crate::batch::Batcher<Req, Resp>>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Arc<dyn Store>, Vec<Req>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = streamspace_store::Result<Vec<Resp>>> + Send + 'static,
{
    Arc::new(crate::batch::store_batcher(
        store,
        AGENT_BATCH,
        1,
        shutdown.clone(),
        call,
    ))
}

/// The receiving ends of the [`crate::cluster::Events`] a replica's cluster sends, for the
/// listeners `serve` starts.
pub(crate) struct EventReceivers {
    pub wakes: mpsc::Receiver<String>,
    pub finished: mpsc::Receiver<Command>,
    pub revoked: mpsc::Receiver<Option<Uuid>>,
    pub ended: mpsc::Receiver<(Uuid, String)>,
    pub unshared: mpsc::Receiver<(Uuid, String)>,
}

/// Builds a replica's shared state: its cluster (single, or Redis when configured), hub,
/// dispatcher (started, owned by `shutdown` and `tasks`), stream registry, waiting requests and
/// credential cache; and the receivers of what other replicas will tell it. `serve` runs it
/// behind a listener; the route tests drive its router directly.
pub(crate) fn assemble(
    store: Arc<dyn Store>,
    config: Arc<ServerConfig>,
    keys: Arc<Keys>,
    oidc: crate::oidc::Providers,
    replica: Arc<crate::cluster::ReplicaInfo>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<(AppState, EventReceivers), ServerError> {
    let peer_tls = crate::tls::peer_config(&config)?;
    let peer_http = reqwest::Client::builder()
        .tls_backend_preconfigured(rustls::ClientConfig::clone(&peer_tls))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ServerError::InvalidConfig(format!("the client for other replicas: {e}")))?;
    let queue = crate::cluster::EVENT_QUEUE;
    let (wakes_tx, wakes) = mpsc::channel(queue);
    let (finished_tx, finished) = mpsc::channel(queue);
    let (revoked_tx, revoked) = mpsc::channel(queue);
    let (ended_tx, ended) = mpsc::channel(queue);
    let (unshared_tx, unshared) = mpsc::channel(queue);
    let cluster = crate::cluster::start(
        crate::cluster::Setup {
            redis: config.redis.clone(),
            ca_cert: config.ca_cert.clone(),
            replica,
            heartbeat: config.heartbeat_interval,
            replica_proofs: keys.replicas.clone(),
            open_timeout: config.tunnel.open_timeout,
            peer_http,
        },
        crate::cluster::Events {
            wakes: wakes_tx,
            finished: finished_tx,
            revoked: revoked_tx,
            ended: ended_tx,
            unshared: unshared_tx,
        },
    )
    .map_err(|e| ServerError::InvalidConfig(e.to_string()))?;
    let hub = cluster.hub();
    let recorder = recorder(&store, &config, tasks)?;
    let outcomes = crate::outcomes::Outcomes::new(cluster.clone());
    let commands = Arc::new(crate::batch::CommandBatches::start(
        &store,
        &config,
        crate::dispatcher::BATCH,
        shutdown.clone(),
    ));
    let delivery = DispatchContext {
        commands: commands.clone(),
        store: store.clone(),
        hub: hub.clone(),
        config: config.clone(),
        outcomes: outcomes.clone(),
    };
    let dispatcher = crate::dispatcher::start(delivery.clone(), shutdown.clone(), tasks);
    let registrar = agent_batcher(&store, &shutdown, |store, regs| async move {
        store.register_agents(&regs).await
    });
    let agent_keys = agent_batcher(&store, &shutdown, |store, hashes| async move {
        store.find_api_keys(&hashes).await
    });
    let heartbeats = agent_batcher(&store, &shutdown, |store, beats| async move {
        store.heartbeat_agents(&beats).await
    });
    let live_sessions = agent_batcher(&store, &shutdown, |store, agents| async move {
        store.list_live_sessions_of(&agents).await
    });
    let state = AppState(Arc::new(Parts {
        delivery,
        live_sessions,
        commands,
        registrar,
        agent_keys,
        heartbeats,
        store,
        keys,
        hub,
        dispatcher,
        shutdown,
        agent_slots: Arc::new(Semaphore::new(config.max_agent_connections)),
        tasks: tasks.clone(),
        cluster,
        tunnels: Arc::default(),
        outcomes,
        credentials: Arc::new(CredentialCache::new(config.credential_cache_ttl)),
        throttle: Arc::default(),
        oidc: Arc::new(oidc),
        peer_tls,
        recorder,
        config,
    }));
    let receivers = EventReceivers {
        wakes,
        finished,
        revoked,
        ended,
        unshared,
    };
    Ok((state, receivers))
}

/// The recorder over the configured recording store, if there is one.
fn recorder(
    store: &Arc<dyn Store>,
    config: &ServerConfig,
    tasks: &TaskTracker,
) -> Result<Option<Arc<crate::recording::Recorder>>, ServerError> {
    let tls = crate::tls::outgoing_config(config)?;
    let storage = crate::recording::storage::open(config.recording.store.as_ref(), &tls)
        .map_err(ServerError::InvalidConfig)?;
    Ok(storage.map(|storage| {
        Arc::new(crate::recording::Recorder {
            store: store.clone(),
            storage,
            tasks: tasks.clone(),
            wait: config.tunnel.send_timeout,
        })
    }))
}

impl AppState {
    /// After a change that may take a credential's power away: forget the cached ones here at
    /// once (and, when `user` lost access altogether, close their viewers here), and tell the
    /// other replicas to do the same.
    pub async fn revoked(&self, why: &str, user: Option<Uuid>) {
        forget_revoked(&self.credentials, &self.tunnels, user);
        self.cluster.announce_revoked(why, user).await;
    }

    /// After an agent key was revoked or an agent deleted: close the connections that names,
    /// here and (announced over Redis) on whichever replica holds them.
    pub async fn agent_revoked(&self, revoked: crate::cluster::AgentRevoked) {
        revoked.close_in(self.hub.as_ref()).await;
        self.cluster.announce_agent_revoked(&revoked).await;
    }

    /// The one place that acts on a session leaving `running` (to `state`), whatever moved
    /// it: its viewers are closed here and on every other replica, with a reason the web UI
    /// shows.
    pub async fn session_left_running(&self, session_id: Uuid, state: SessionState) {
        let reason = crate::streams::ended_reason(state);
        let viewers = self
            .tunnels
            .close_session(session_id, close_code::NORMAL, &reason);
        if viewers > 0 {
            tracing::info!(%session_id, %reason, viewers, "closed the viewers of a session that left running");
        }
        self.cluster
            .announce_session_ended(session_id, &reason)
            .await;
    }

    /// Creates a command for `agent_id` with `create` (told whether to insert it claimed, see
    /// `NewCommand::send_now`) and gets it moving. When the agent is connected here and its
    /// delivery turn is free, the command is inserted claimed and sent from here, which saves
    /// the dispatcher's claim (a statement) and its wake-up; otherwise as [`Self::route_to`].
    /// Runs as a task of its own: a client that hangs up cannot leave a claimed command unsent
    /// until its ack timeout.
    pub async fn create_command<F, Fut>(
        &self,
        agent_id: String,
        create: F,
    ) -> Result<Command, crate::error::ApiError>
    where
        F: FnOnce(Option<streamspace_store::SendNow>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Command, crate::error::ApiError>> + Send + 'static,
    {
        let app = self.clone();
        let task = self.tasks.spawn(
            async move {
                let turn = if app.hub.holds(&agent_id).await {
                    app.dispatcher.take_turn(&agent_id)
                } else {
                    None
                };
                let Some(turn) = turn else {
                    let created = create(None).await?;
                    app.route_to(&agent_id).await;
                    return Ok(created);
                };
                let send_now = streamspace_store::SendNow {
                    ack_timeout_secs: app.config.ack_timeout.as_secs_f64(),
                    max_attempts: app.config.max_attempts,
                };
                let created = match create(Some(send_now)).await {
                    Ok(created) => created,
                    // Refused (a conflict, a missing agent): nothing was written, no pass is owed.
                    Err(e) if e.status.is_client_error() => {
                        turn.release();
                        return Err(e);
                    }
                    Err(e) => return Err(e),
                };
                crate::metrics::command("pending");
                crate::metrics::delivery("local");
                if created.status == CommandStatus::Sent
                    && !turn.send(&app.delivery, created.clone()).await
                {
                    app.unclaimed(&created).await;
                }
                // Dropping the turn of a command left pending runs a pass for it.
                Ok(created)
            }
            .in_current_span(),
        );
        task.await.map_err(|e| {
            tracing::error!(error = %e, "creating a command failed");
            crate::error::ApiError::internal()
        })?
    }

    /// A command claimed in its insert found its agent gone before it could be handed over
    /// (it reconnected elsewhere, say): the claim is given back and the command routed as one
    /// created pending, so it goes in order with the agent's others instead of waiting out its
    /// ack timeout while later ones pass it.
    async fn unclaimed(&self, command: &Command) {
        match self.store.unclaim_delivery(command.command_id).await {
            // Counted as created already: only routed.
            Ok(true) => self.route(&command.agent_id).await,
            // Moved on meanwhile (the agent's new connection resent it, say).
            Ok(false) => {}
            Err(e) => tracing::warn!(command_id = %command.command_id, error = %e,
                "giving back the claim of an unsent command failed; it is resent after its ack timeout"),
        }
    }

    /// Gets a command just created for `agent_id` moving, wherever the agent is connected.
    pub async fn route_to(&self, agent_id: &str) {
        crate::metrics::command("pending");
        self.route(agent_id).await;
    }

    /// [`Self::route_to`] without counting the command as created.
    async fn route(&self, agent_id: &str) {
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
