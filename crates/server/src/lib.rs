//! The StreamSpace control plane: REST API, agent WebSocket endpoint, hub and dispatcher.
//!
//! [`serve`] runs one replica on an already bound listener until its shutdown token is
//! cancelled. The parts, one module each:
//! - `api` — the REST API under `/api/v1` (admin token), `/healthz` and `/readyz`;
//! - `agent_ws` — the agents' WebSocket endpoint: authentication, registration, messages;
//! - [`hub`] — which agents are connected here and how to send to them (in memory for now,
//!   behind a trait so a Redis-backed hub can route between replicas later);
//! - `dispatcher` — moves commands from the database to connected agents;
//! - [`tunnel`] — viewers' VNC streams: viewer tokens, the browser and agent data endpoints;
//! - `keys` and `bootstrap` — credentials stored as keyed hashes, and first-start setup.
//! - `web` — the web UI's built files, embedded in the binary and served by the fallback route.
//!
//! The server never starts sessions itself: it records intent in the [`Store`] and tells agents.
//!
//! Decisions the architecture document leaves open, made here:
//! - `no_capacity` answers 503 (retry later); well-formed JSON of the wrong shape answers 422
//!   `invalid_body`; malformed JSON 400 `bad_request`.
//! - One clock: an agent must register within, and send something every, 3 × the heartbeat
//!   interval; a write to an agent may take at most one interval. `welcome` states the interval
//!   in whole seconds (rounded up), so intervals under a second are for tests only.
//! - Close codes beyond proto's: 1002 broken WebSocket framing, 1011 server-side failure
//!   (registration not recorded, write failed), 1013 the agent's outbound queue is full.
//! - On (re)connect, `acknowledged` commands are sent again without a new attempt (the agent
//!   answers duplicates from memory); `sent` ones are re-claimed at once.
//! - At registration, reported sessions of other agents are ignored (logged); a later
//!   `session_status` for another agent's session closes the connection (1008). Reports for
//!   unknown sessions are ignored.
//! - At most one dispatcher worker delivers for a given agent at a time.

mod agent_ws;
mod api;
mod auth;
mod bootstrap;
mod config;
mod dispatcher;
mod error;
pub mod hub;
mod keys;
mod metrics;
mod outcomes;
mod redis_hub;
mod redis_link;
pub mod replicas;
mod routing;
mod state;
pub mod tunnel;
mod web;

use std::sync::Arc;

use streamspace_proto::api::CreatedAgentKey;
use streamspace_store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{ConfigError, ServerConfig};
pub use error::{ApiError, ServerError};
pub use keys::{ADMIN_PREFIX, AGENT_PREFIX, HMAC_SECRET_SETTING, KeyHasher};
pub use tunnel::TunnelConfig;

use crate::dispatcher::DispatchContext;
use crate::hub::{Hub, LocalHub};
use crate::state::AppState;

/// Runs one control-plane replica on `listener` until `shutdown` is cancelled.
///
/// On shutdown it stops accepting requests, tells connected agents to reconnect elsewhere
/// (`shutdown`, then close 1001), lets in-flight requests and deliveries finish (up to a grace
/// period), and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    config.validate()?;
    let hasher = KeyHasher::load(store.as_ref()).await?;
    let redis_target = match &config.redis_url {
        Some(url) => Some(
            redis_link::Target::parse(url)
                .map_err(|e| ServerError::InvalidConfig(e.to_string()))?,
        ),
        None => None,
    };
    let config = Arc::new(config);
    metrics::init();
    let addr = listener.local_addr()?;
    let replica = Arc::new(replicas::ReplicaInfo {
        id: config.replica_id.clone(),
        address: internal_address(&config, addr),
        started_at: chrono::Utc::now(),
    });
    let local = Arc::new(LocalHub::new());
    let redis = redis_target.map(|target| {
        Arc::new(redis_link::RedisLink::new(
            target,
            replica.clone(),
            local.clone(),
            config.heartbeat_interval,
        ))
    });
    let hub: Arc<dyn Hub> = match &redis {
        Some(link) => Arc::new(redis_hub::RedisHub::new(link.clone())),
        None => local.clone(),
    };
    let outcomes = outcomes::Outcomes::new(redis.clone());
    if let Some(link) = &redis {
        link.set_outcomes(&outcomes);
    }
    let tasks = TaskTracker::new();
    let dispatcher = dispatcher::start(
        DispatchContext {
            store: store.clone(),
            hub: hub.clone(),
            config: config.clone(),
            outcomes: outcomes.clone(),
        },
        shutdown.clone(),
        &tasks,
    );
    // The link outlives the HTTP server a little: agents' owner records are released after
    // the server stops accepting, so it stops only when the tracked tasks are done.
    let redis_stop = CancellationToken::new();
    let supervisor = redis.as_ref().map(|link| {
        link.set_dispatcher(dispatcher.clone());
        tokio::spawn(link.clone().supervise(redis_stop.clone()))
    });
    let state = AppState {
        store,
        config: config.clone(),
        hasher,
        hub: hub.clone(),
        dispatcher,
        shutdown: shutdown.clone(),
        agent_slots: Arc::new(Semaphore::new(config.max_agent_connections)),
        tasks: tasks.clone(),
        replica: replica.clone(),
        redis,
        tunnels: Arc::default(),
        outcomes,
    };
    tracing::info!(%addr, replica_id = %config.replica_id, address = %replica.address,
        redis = config.redis_url.is_some(), "control plane listening");

    // Agent connections are upgraded out of the HTTP server's sight: close them ourselves.
    let notify = {
        let shutdown = shutdown.clone();
        let hub = hub.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            hub.shutdown_all("replica shutting down").await;
        })
    };
    // Every connection here carries small, latency-bound messages (commands and their answers,
    // API calls, keystrokes): send each at once instead of letting Nagle's algorithm hold it.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let result = axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    // If serving failed on its own, stop everything else too.
    shutdown.cancel();
    let _ = notify.await;
    tasks.close();
    if tokio::time::timeout(dispatcher::SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some agent connections or deliveries did not finish in time");
    }
    redis_stop.cancel();
    if let Some(supervisor) = supervisor {
        let _ = supervisor.await;
    }
    tracing::info!(replica_id = %config.replica_id, "control plane stopped");
    result.map_err(ServerError::Io)
}

/// Where other replicas reach this one: the configured address, else the listen address (with
/// the hostname in place of an unspecified IP).
fn internal_address(config: &ServerConfig, addr: std::net::SocketAddr) -> String {
    if let Some(address) = &config.internal_address {
        return address.clone();
    }
    if addr.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        return format!("{host}:{}", addr.port());
    }
    addr.to_string()
}

/// Ensures the HMAC secret exists, the admin token exists (from `admin_token` if given — e.g.
/// `STREAMSPACE_ADMIN_TOKEN` — else generated when no admin key exists yet), and seeds the
/// default templates (at least `xterm` = `["xterm"]`) into an empty templates table. Returns the
/// newly generated admin token, if one was generated (to print once).
pub async fn bootstrap(
    store: &dyn Store,
    admin_token: Option<&str>,
) -> Result<Option<String>, ServerError> {
    bootstrap::run(store, admin_token).await
}

/// Creates an agent key bound to `agent_id` (used by `streamspace up` for its local agent, and by
/// the API). The secret in the answer is shown only this once.
pub async fn create_agent_key(
    store: &dyn Store,
    agent_id: &str,
) -> Result<CreatedAgentKey, ServerError> {
    let hasher = KeyHasher::load(store).await?;
    keys::create_agent_key_with(store, &hasher, agent_id).await
}
