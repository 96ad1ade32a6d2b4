//! The replica's link to Redis: where Redis is (directly or through Sentinel), the one shared
//! connection, and the supervisor that keeps it up.
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
use super::{ended, finished, revoked};
use crate::cluster::{Events, ReplicaInfo};
use crate::hub::LocalHub;

/// Longest wait for one Redis operation before it counts as failed.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest pause between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// A Redis URL that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL: {0}")]
pub struct InvalidRedisUrl(String);

/// Where Redis is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Direct(redis::Client),
    /// `redis+sentinel://host:port[,host:port…]/master-name`
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, InvalidRedisUrl> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (hosts, master) = rest.split_once('/').ok_or_else(|| {
                InvalidRedisUrl("expected redis+sentinel://HOST:PORT[,…]/MASTER".into())
            })?;
            let master = master.trim_end_matches('/').to_owned();
            let sentinels: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| {
                    if h.contains(':') {
                        h.to_owned()
                    } else {
                        format!("{h}:26379")
                    }
                })
                .collect();
            if sentinels.is_empty() || master.is_empty() {
                return Err(InvalidRedisUrl(
                    "a Sentinel URL needs at least one host and a master name".into(),
                ));
            }
            return Ok(Self::Sentinel { sentinels, master });
        }
        open_client(url)
            .map(Self::Direct)
            .map_err(|e| InvalidRedisUrl(e.to_string()))
    }

    /// A client for the current master.
    async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel { sentinels, master } => {
                let mut last = None;
                for sentinel in sentinels {
                    match ask_sentinel(sentinel, master).await {
                        Ok(client) => return Ok(client),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| io_error("no sentinel configured")))
            }
        }
    }
}

/// A client whose connections send each request at once. redis-rs leaves Nagle's algorithm on
/// by default, which holds back a small request while an earlier one is unacknowledged; every
/// request here is small and latency-bound (routing lookups, wake-ups, announcements).
fn open_client(url: &str) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    redis::Client::open(info.set_tcp_settings(tcp))
}

async fn ask_sentinel(sentinel: &str, master: &str) -> redis::RedisResult<redis::Client> {
    let client = open_client(&format!("redis://{sentinel}/"))?;
    let mut conn = timed(client.get_multiplexed_async_connection()).await?;
    let addr: Option<(String, u16)> = timed(
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .query_async(&mut conn),
    )
    .await?;
    let (host, port) = addr.ok_or_else(|| io_error("the sentinel does not know that master"))?;
    open_client(&format!("redis://{host}:{port}/"))
}

fn io_error(msg: &str) -> redis::RedisError {
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

    async fn connect(
        &self,
        channel: &str,
    ) -> redis::RedisResult<(MultiplexedConnection, redis::aio::PubSub)> {
        let client = self.target.client().await?;
        let conn = timed(client.get_multiplexed_async_connection()).await?;
        let mut pubsub = timed(client.get_async_pubsub()).await?;
        timed(pubsub.subscribe(&[channel, finished::CHANNEL, revoked::CHANNEL, ended::CHANNEL]))
            .await?;
        // A failover can leave a demoted master answering: refuse it.
        let role: Vec<redis::Value> =
            timed(redis::cmd("ROLE").query_async(&mut conn.clone())).await?;
        if !matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
            return Err(io_error("connected Redis is not a master"));
        }
        Ok((conn, pubsub))
    }

    /// One connected period: announce ourselves, then serve wake-ups until the link breaks.
    async fn session(&self, pubsub: redis::aio::PubSub, shutdown: &CancellationToken) {
        if let Err(e) = routing::publish_all(self).await {
            tracing::warn!(error = %e, "re-publishing agent ownership failed");
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
                        tracing::debug!(error = %e, "refreshing ownership failed");
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
        if msg.get_channel_name() == ended::CHANNEL {
            if let Some(ended) = ended::parse(&payload) {
                let _ = self.events.ended.send(ended).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_their_hosts_and_master() {
        match Target::parse("redis+sentinel://s1:26380,s2/mymaster") {
            Ok(Target::Sentinel { sentinels, master }) => {
                assert_eq!(sentinels, ["s1:26380", "s2:26379"]);
                assert_eq!(master, "mymaster");
            }
            other => panic!("not a sentinel target: {other:?}"),
        }
        assert!(Target::parse("redis+sentinel://s1:26379").is_err());
        assert!(Target::parse("redis+sentinel://s1:26379/").is_err());
        assert!(Target::parse("redis+sentinel:///m").is_err());
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379/"),
            Ok(Target::Direct(_))
        ));
        assert!(Target::parse("not a url").is_err());
    }
}
