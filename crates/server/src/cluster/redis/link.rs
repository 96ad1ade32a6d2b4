//! The replica's link to Redis: the one shared connection to the master (found through
//! [`Target`]), and the supervisor that keeps it up.
//!
//! Redis only accelerates routing; PostgreSQL stays the source of truth. The supervisor connects,
//! subscribes to this replica's wake-up channel and to finished commands, re-publishes the
//! ownership records of every agent held here, and wakes delivery for all of them (a wake-up
//! published while we were not subscribed is gone, so we re-read what is pending). What it
//! hears goes out on the [`Events`] channels. While Redis is unreachable every Redis
//! operation fails at once (no connection is held), the replica keeps serving its own agents
//! from the database, the outage is logged once, and reconnects back off up to
//! [`MAX_BACKOFF`]. Under Sentinel the master is looked up on every (re)connect, so a failover
//! is followed as soon as the old master's connections break.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::routing::{self, Wake};
use super::target::{Target, explain};
use super::{closing, finished, revoked};
use crate::cluster::{Events, ReplicaInfo};
use crate::hub::LocalHub;

/// Longest wait for one Redis operation before it counts as failed.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// A Redis configuration that could not be understood. Its message never quotes the URL,
/// which may hold a password.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis configuration: {0}")]
pub struct InvalidRedisUrl(pub(crate) String);

pub(crate) fn io_error(msg: &str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::other(msg.to_owned()))
}

/// Runs a Redis future with [`OP_TIMEOUT`].
pub(crate) async fn timed<T>(
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(io_error("Redis did not answer in time")),
    }
}

/// The shared Redis state of one replica.
pub(crate) struct RedisLink {
    target: Target,
    pub replica: Arc<ReplicaInfo>,
    pub local: Arc<LocalHub>,
    pub liveness: Duration,
    pub heartbeat: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    broken: tokio::sync::Notify,
    /// Where wake-ups and finished commands from other replicas go.
    pub events: Events,
}

impl RedisLink {
    pub fn new(
        target: Target,
        replica: Arc<ReplicaInfo>,
        local: Arc<LocalHub>,
        heartbeat: Duration,
        events: Events,
    ) -> Self {
        Self {
            target,
            replica,
            local,
            liveness: heartbeat.saturating_mul(3),
            heartbeat,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            broken: tokio::sync::Notify::new(),
            events,
        }
    }

    /// Whether Redis is connected right now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs `f` on the shared connection; fails at once while Redis is down. A failure marks
    /// the connection broken so the supervisor reconnects.
    pub async fn with_conn<T, F, Fut>(&self, f: F) -> redis::RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| io_error("Redis is not connected"))?;
        let result = timed(f(conn)).await;
        if let Err(e) = &result
            && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
        {
            self.broken.notify_one();
        }
        result
    }

    fn set_conn(&self, conn: Option<MultiplexedConnection>) {
        self.up.store(conn.is_some(), Ordering::Relaxed);
        crate::metrics::redis_up(conn.is_some());
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    /// Keeps the link up until `shutdown`.
    pub async fn supervise(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        let mut reported_down = false;
        let channel = routing::channel(&self.replica.id);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.connect(&channel).await {
                Ok((conn, pubsub)) => {
                    self.set_conn(Some(conn));
                    if reported_down {
                        tracing::info!("Redis reachable again; re-publishing agent ownership");
                    } else {
                        tracing::info!("connected to Redis");
                    }
                    backoff = MIN_BACKOFF;
                    self.session(pubsub, &shutdown).await;
                    self.set_conn(None);
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tracing::error!(
                        "lost Redis; serving this replica's agents from the database until it returns"
                    );
                    reported_down = true;
                }
                Err(e) if !reported_down => {
                    tracing::error!(error = %e, "Redis unreachable; serving this replica's agents from the database and retrying");
                    reported_down = true;
                }
                Err(e) => tracing::debug!(error = %e, "Redis still unreachable"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connects to the master and subscribes; the error says what the operator should check.
    async fn connect(
        &self,
        channel: &str,
    ) -> Result<(MultiplexedConnection, redis::aio::PubSub), String> {
        // Errors from asking the Sentinels are explained already, naming the Sentinel.
        let client = self.target.client().await.map_err(|e| e.to_string())?;
        let connected = async {
            let conn = timed(client.get_multiplexed_async_connection()).await?;
            let mut pubsub = timed(client.get_async_pubsub()).await?;
            timed(pubsub.subscribe(&[
                channel,
                finished::CHANNEL,
                revoked::CHANNEL,
                closing::ENDED.channel,
                closing::UNSHARED.channel,
            ]))
            .await?;
            // A failover can leave a demoted master answering: refuse it.
            let role: Vec<redis::Value> =
                timed(redis::cmd("ROLE").query_async(&mut conn.clone())).await?;
            if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                return Err(io_error("connected Redis is not a master"));
            }
            Ok((conn, pubsub))
        };
        connected.await.map_err(|e| explain(&e))
    }

    /// One connected period: announce ourselves, then serve wake-ups until the link breaks.
    async fn session(&self, pubsub: redis::aio::PubSub, shutdown: &CancellationToken) {
        if let Err(e) = routing::publish_all(self).await {
            tracing::warn!(error = %explain(&e), "re-publishing agent ownership failed");
            return;
        }
        // Anything published to us while we were not subscribed is gone: re-read the database,
        // and forget cached credentials, whose revocation we may have missed.
        let _ = self.events.revoked.send(None).await;
        for (agent_id, _) in self.local.held() {
            if self.events.wakes.send(agent_id).await.is_err() {
                break;
            }
        }
        let mut messages = pubsub.into_on_message();
        let mut refresh = tokio::time::interval(self.heartbeat);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.broken.notified() => return,
                _ = refresh.tick() => {
                    if let Err(e) = routing::publish_all(self).await {
                        tracing::debug!(error = %explain(&e), "refreshing ownership failed");
                        return;
                    }
                }
                msg = messages.next() => match msg {
                    Some(msg) => self.on_message(&msg).await,
                    None => return,
                },
            }
        }
    }

    /// A message on one of the channels this replica reads.
    async fn on_message(&self, msg: &redis::Msg) {
        let payload = match msg.get_payload::<String>() {
            Ok(payload) => payload,
            Err(e) => {
                tracing::warn!(error = %e, channel = msg.get_channel_name(), "ignoring a malformed message");
                return;
            }
        };
        if msg.get_channel_name() == revoked::CHANNEL {
            let heard = revoked::parse(&payload);
            if let Some(agent) = &heard.agent {
                agent.close_in(self.local.as_ref()).await;
            }
            let _ = self.events.revoked.send(heard.user).await;
            return;
        }
        if msg.get_channel_name() == closing::ENDED.channel {
            if let Some(ended) = closing::ENDED.parse(&payload) {
                let _ = self.events.ended.send(ended).await;
            }
            return;
        }
        if msg.get_channel_name() == closing::UNSHARED.channel {
            if let Some(unshared) = closing::UNSHARED.parse(&payload) {
                let _ = self.events.unshared.send(unshared).await;
            }
            return;
        }
        if msg.get_channel_name() == finished::CHANNEL {
            if let Some(command) = finished::parse(&payload) {
                let _ = self.events.finished.send(command).await;
            }
            return;
        }
        match serde_json::from_str::<Wake>(&payload) {
            Ok(wake) => routing::on_wake(self, wake).await,
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed wake-up"),
        }
    }
}
