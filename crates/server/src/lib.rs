//! The StreamSpace control plane: REST API, agent WebSocket endpoint, hub and dispatcher.
//!
//! [`serve`] runs one replica on an already bound listener until its shutdown token is
//! cancelled. The parts, one module each:
//! - `api` — the REST API under `/api/v1` (admin token), `/healthz`, `/readyz` and `/metrics`;
//!   its router names every route of the replica;
//! - `agent_ws` — the agents' WebSocket endpoint: authentication, registration, messages;
//! - [`hub`] — which agents are connected here and how to send to them;
//! - `cluster` — everything about other replicas, behind one interface: alone (no Redis) or
//!   sharing agents, wake-ups, finished commands and streams with other replicas through Redis;
//! - `dispatcher` — moves commands from the database to connected agents;
//! - `outcomes` — API requests waiting for commands to finish;
//! - [`tunnel`] — viewers' VNC streams: viewer tokens, the browser and agent data endpoints, the
//!   hop between replicas; `streams` registers the streams of this replica;
//! - `state` — what every handler shares; `extract` — request extractors answering errors as
//!   JSON; `config`, `error`, `metrics`;
//! - `auth` — who is calling (the admin token);
//! - `oidc` — single sign-on through OpenID Connect providers (the flow, without routing);
//! - `keyring` — the master secret and the keys derived from it, one per purpose;
//! - `tls` — the listener's certificate (re-read when it changes) and client certificates;
//! - `keys` and `bootstrap` — credentials stored as keyed hashes, and first-start setup;
//! - `web` — the web UI's built files, embedded in the binary and served by the fallback route.
//!
//! No module uses one that uses it back (`module_graph` tests it). What other replicas say
//! reaches the dispatcher and the waiting requests through channels [`serve`] wires once.
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

mod actor;
mod agent_ws;
mod api;
mod audit;
mod auth;
mod batch;
mod bootstrap;
mod cluster;
mod config;
mod dispatcher;
mod error;
mod extract;
mod http;
pub mod hub;
mod keyring;
mod keys;
mod metrics;
#[cfg(test)]
mod module_graph;
mod oidc;
mod outcomes;
mod overview;
mod policy;
mod recording;
mod retention;
mod rules;
mod signin;
mod state;
mod streams;
mod tls;
mod totp;
pub mod tunnel;
mod web;

use std::sync::Arc;

use streamspace_proto::api::CreatedAgentKey;
use streamspace_proto::tunnel::close_code;
use streamspace_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::openapi;
pub use config::{
    ConfigError, DEFAULT_RULES, DEFAULT_SESSION_SIZE, HttpConfig, ListenerTls, MetricsToken,
    RecordingConfig, RecordingStoreConfig, RedisConfig, RetentionConfig, S3Config, ServerConfig,
    TunnelConfig,
};
pub use error::{ApiError, ServerError};
pub use keyring::{
    BrowserSessions, CredentialHashing, Keyring, Keys, MASTER_SECRET_SETTING,
    MIN_MASTER_SECRET_BYTES, MasterSecret, OpenedSecret, Purpose, ReplicaProofs, SealBroken,
    SecretError, SecretsConfig, TotpSealKeys, ViewerTokens,
};
pub use keys::{ADMIN_PREFIX, AGENT_PREFIX};
pub use oidc::{OidcProviderConfig, OidcProvidersFile};

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
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let keys = Arc::new(Keys::load(store.as_ref(), &config.secrets).await?);
    match totp::seal_stored_secrets(store.as_ref(), &keys).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            sealed = n,
            "sealed one-time-code secrets under the current key"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "sealing stored one-time-code secrets failed; retried on use")
        }
    }
    let outgoing = tls::outgoing_config(&config)?;
    let oidc =
        oidc::Providers::discover(&config.oidc, config.tunnel.public_url.as_deref(), &outgoing)
            .await
            .map_err(|e| ServerError::InvalidConfig(e.to_string()))?;
    let config = Arc::new(config);
    metrics::init();
    let addr = listener.local_addr()?;
    let replica = Arc::new(cluster::ReplicaInfo {
        id: config.replica_id.clone(),
        address: internal_address(&config, addr),
        tls: config.tls.is_some(),
        started_at: chrono::Utc::now(),
    });
    let address = replica.address.clone();
    let tasks = TaskTracker::new();
    let (state, events) = state::assemble(
        store,
        config.clone(),
        keys,
        oidc,
        replica,
        shutdown.clone(),
        &tasks,
    )?;
    let hub = state.hub.clone();
    // The cluster outlives the HTTP server a little: agents' owner records are released after
    // the server stops accepting, so it stops only when the tracked tasks are done.
    let cluster_stop = CancellationToken::new();
    let cluster_tasks = listen(&state, events, &cluster_stop);
    tasks.spawn(retention::run(
        state.store.clone(),
        state.recorder.as_ref().map(|r| r.storage.clone()),
        config.retention.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(overview::run(
        state.store.clone(),
        chrono::Utc::now,
        shutdown.clone(),
    ));
    tracing::info!(%addr, replica_id = %config.replica_id, %address,
        redis = config.redis.is_some(), "control plane listening");

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
    let metrics = match &config.http.metrics_listen {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address).await?;
            tracing::info!(address = %listener.local_addr()?, "metrics listening");
            let (router, http, stop) = (
                api::metrics_router().with_state(state.clone()),
                config.http.clone(),
                shutdown.clone(),
            );
            Some(tokio::spawn(async move {
                http::serve(listener, router, &http, None, stop).await;
            }))
        }
        None => None,
    };
    http::serve(
        listener,
        api::router(state),
        &config.http,
        acceptor,
        shutdown.clone(),
    )
    .await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
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
    cluster_stop.cancel();
    for task in cluster_tasks {
        let _ = task.await;
    }
    tracing::info!(replica_id = %config.replica_id, "control plane stopped");
    Ok(())
}

/// Starts what keeps the replica in step with the others until `stop`: the link itself, and
/// one listener per kind of event it hears (wake-ups for the dispatcher, finished commands for
/// waiting requests, revocations, ended sessions, revoked share links), plus the check of this
/// replica's viewers.
fn listen(
    state: &AppState,
    events: state::EventReceivers,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let state::EventReceivers {
        wakes,
        finished,
        mut revoked,
        mut ended,
        mut unshared,
    } = events;
    vec![
        tokio::spawn({
            let (cluster, stop) = (state.cluster.clone(), stop.clone());
            async move { cluster.run(stop).await }
        }),
        tokio::spawn({
            let (dispatcher, stop) = (state.dispatcher.clone(), stop.clone());
            async move { dispatcher.follow(wakes, stop).await }
        }),
        tokio::spawn({
            let (outcomes, stop) = (state.outcomes.clone(), stop.clone());
            async move { outcomes.listen(finished, stop).await }
        }),
        tokio::spawn({
            let (credentials, tunnels) = (state.credentials.clone(), state.tunnels.clone());
            let stop = stop.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        heard = revoked.recv() => match heard {
                            Some(user) => state::forget_revoked(&credentials, &tunnels, user),
                            None => return,
                        },
                    }
                }
            }
        }),
        tokio::spawn({
            let (tunnels, stop) = (state.tunnels.clone(), stop.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        heard = ended.recv() => match heard {
                            Some((session_id, reason)) => {
                                tunnels.close_session(session_id, close_code::NORMAL, &reason);
                            }
                            None => return,
                        },
                    }
                }
            }
        }),
        tokio::spawn({
            let (tunnels, stop) = (state.tunnels.clone(), stop.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        heard = unshared.recv() => match heard {
                            Some((share_id, reason)) => {
                                tunnels.close_share(share_id, close_code::POLICY, &reason);
                            }
                            None => return,
                        },
                    }
                }
            }
        }),
        tokio::spawn(check_viewed_sessions(
            state.store.clone(),
            state.tunnels.clone(),
            state.config.sweep_interval,
            stop.clone(),
        )),
    ]
}

/// Every `every`, closes the viewers held here of sessions that are no longer running: what
/// the announcements of other replicas missed (see [`streams`]).
async fn check_viewed_sessions(
    store: Arc<dyn Store>,
    tunnels: Arc<streams::Tunnels>,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                streams::close_ended(store.as_ref(), &tunnels).await;
            }
        }
    }
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

/// Ensures the master secret exists (in the database: see [`bootstrap_saving`] for one kept in a
/// file), the admin token exists (from `admin_token` if given — e.g.
/// `STREAMSPACE_ADMIN_TOKEN` — else generated when no admin key exists yet), and seeds the
/// default templates (at least `xterm` = `["xterm"]`) into an empty templates table. Returns the
/// newly generated admin token, if one was generated (for the caller to save; see
/// [`bootstrap_saving`] to save it before it is stored).
pub async fn bootstrap(
    store: &dyn Store,
    admin_token: Option<&str>,
) -> Result<Option<String>, ServerError> {
    bootstrap::run(store, &SecretsConfig::default(), admin_token, |_| Ok(())).await
}

/// [`bootstrap`] with the master secret where `secrets` says, handing a generated admin token to
/// `save` before storing it: if saving fails, nothing is stored and the error says why, so no
/// admin token exists that nobody can read. `streamspace server` writes it to a file (mode
/// 0600) and never to its output.
pub async fn bootstrap_saving(
    store: &dyn Store,
    secrets: &SecretsConfig,
    admin_token: Option<&str>,
    save: impl FnOnce(&str) -> std::io::Result<()> + Send,
) -> Result<Option<String>, ServerError> {
    bootstrap::run(store, secrets, admin_token, save).await
}

/// Sets the password of the bootstrap `admin` user, so that it can sign in to the web UI, unless
/// it already has one (set earlier, or changed by the admin since): returns whether it was set.
/// `streamspace up` calls it with the password it generated and saved.
pub async fn set_bootstrap_admin_password(
    store: &dyn Store,
    password: &str,
) -> Result<bool, ServerError> {
    bootstrap::set_admin_password(store, password).await
}

/// Creates an agent key bound to `agent_id` (used by `streamspace up` for its local agent),
/// audited as done by `system`. The secret in the answer is shown only this once.
pub async fn create_agent_key(
    store: &dyn Store,
    agent_id: &str,
) -> Result<CreatedAgentKey, ServerError> {
    let keys = Keys::load(store, &SecretsConfig::default()).await?;
    let entry = |id: uuid::Uuid| {
        streamspace_store::AuditEntry::system(
            "agent_key.create",
            id.to_string(),
            serde_json::json!({ "agent_id": agent_id }),
        )
    };
    keys::create_agent_key_with(store, &keys.credentials, agent_id, entry).await
}
