//! The hub: which agents hold a connection to this replica, and the way to reach them.
//!
//! Everything else in the server talks to agents through the [`Hub`] trait. [`LocalHub`] is the
//! single-replica implementation, and the local half of the hub the `cluster` module builds when
//! replicas share their agents through Redis (it adds ownership records): a map from agent id to the agent's current [`AgentConnection`], guarded by a mutex
//! that is never held across an `.await`.
//!
//! Each connection has its own id and its database epoch. A newer connection replaces an older
//! one (which is closed with 4001), and removing a connection removes only *that* connection,
//! so the cleanup of an old socket can never evict the agent's newer one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use streamspace_proto::wire::{self, MAX_MESSAGE_BYTES, ServerMessage, close_code};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Why a message could not be handed to an agent's connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("agent {0} is not connected to this replica")]
    NotConnected(String),
    #[error("agent {0} is not reading its messages; its connection was closed")]
    Overloaded(String),
    /// The message would exceed the agent protocol's frame limit: the agent would drop the
    /// connection on reading it, so it is not sent (the connection stays up).
    #[error(
        "the message is {size} bytes encoded, over the agent protocol's limit of {limit} bytes"
    )]
    TooBig { size: usize, limit: usize },
    /// The agent's connection did not announce support for this message (an older agent).
    #[error("agent {0} predates file transfer; upgrade it to carry files")]
    Unsupported(String),
}

/// Why a connection could not become its agent's current one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent {agent_id} already has a newer connection (epoch {current} > {offered})")]
pub struct StaleConnection {
    pub agent_id: String,
    pub current: i64,
    pub offered: i64,
}

/// Ends one connection, remembering the first close code and reason asked for.
#[derive(Debug, Default)]
pub struct Closer {
    token: CancellationToken,
    reason: Mutex<Option<(u16, String)>>,
}

impl Closer {
    /// Asks the connection to close with `code`; later requests keep the first reason.
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        {
            let mut slot = lock(&self.reason);
            if slot.is_none() {
                *slot = Some((code, reason.into()));
            }
        }
        self.token.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn closed(&self) {
        self.token.cancelled().await;
    }

    /// The close code and reason, once closing.
    pub fn reason(&self) -> Option<(u16, String)> {
        lock(&self.reason).clone()
    }
}

/// The hub's handle on one agent connection: its identity and its outbound queue.
#[derive(Debug, Clone)]
pub struct AgentConnection {
    pub agent_id: String,
    /// Unique per connection within this process.
    pub conn_id: u64,
    /// The agent's epoch from its registration; higher is newer.
    pub epoch: i64,
    /// The key the agent authenticated with (revoking it closes the connection).
    pub key_id: Uuid,
    /// The agent said in `register` that it carries file transfers.
    pub file_transfer: bool,
    outbox: mpsc::Sender<ServerMessage>,
    closer: Arc<Closer>,
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

impl AgentConnection {
    pub fn new(
        agent_id: String,
        epoch: i64,
        key_id: Uuid,
        outbox: mpsc::Sender<ServerMessage>,
        closer: Arc<Closer>,
    ) -> Self {
        Self {
            agent_id,
            conn_id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            epoch,
            key_id,
            file_transfer: false,
            outbox,
            closer,
        }
    }

    /// The connection of an agent that carries file transfers (`file_transfer` in register).
    pub fn with_file_transfer(mut self, file_transfer: bool) -> Self {
        self.file_transfer = file_transfer;
        self
    }

    /// Queues `msg` without waiting. A full queue means the agent stopped reading: the
    /// connection is torn down (the agent reconnects) rather than buffered without limit. A
    /// message over the frame limit is refused before it is queued: the agent would drop the
    /// connection, and with it every other session's traffic, on reading it.
    pub fn send(&self, msg: ServerMessage) -> Result<(), DeliveryError> {
        if matches!(msg, ServerMessage::TransferOpen(_)) && !self.file_transfer {
            return Err(DeliveryError::Unsupported(self.agent_id.clone()));
        }
        let size = wire::encode(&msg).len();
        if size > MAX_MESSAGE_BYTES {
            return Err(DeliveryError::TooBig {
                size,
                limit: MAX_MESSAGE_BYTES,
            });
        }
        match self.outbox.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(
                    close_code::TRY_AGAIN_LATER,
                    "outbound queue full: the agent is not reading",
                );
                Err(DeliveryError::Overloaded(self.agent_id.clone()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(DeliveryError::NotConnected(self.agent_id.clone()))
            }
        }
    }

    pub fn close(&self, code: u16, reason: impl Into<String>) {
        self.closer.close(code, reason);
    }
}

/// Where agents are connected and how to send to them.
#[async_trait]
pub trait Hub: Send + Sync + 'static {
    /// Makes `conn` its agent's current connection and closes the one it replaces (4001).
    /// Refuses a connection older (by epoch) than the current one.
    async fn attach(&self, conn: AgentConnection) -> Result<(), StaleConnection>;
    /// Removes the connection `conn_id` of `agent_id` if it is still the current one; returns
    /// whether it was.
    async fn detach(&self, agent_id: &str, conn_id: u64) -> bool;
    /// Hands `msg` to the agent's current connection.
    async fn send(&self, agent_id: &str, msg: ServerMessage) -> Result<(), DeliveryError>;
    /// Whether this replica holds a connection of `agent_id`.
    async fn holds(&self, agent_id: &str) -> bool;
    /// Closes the agent's connection, if held here.
    async fn close_agent(&self, agent_id: &str, code: u16, reason: &str);
    /// Closes every connection authenticated with `key_id`.
    async fn close_key(&self, key_id: Uuid, code: u16, reason: &str);
    /// Tells every agent the replica is going away, then closes its connection (1001).
    async fn shutdown_all(&self, reason: &str);
    /// Agent ids connected here.
    async fn agents(&self) -> Vec<String>;
}

/// The in-memory hub of a single replica.
#[derive(Debug, Default)]
pub struct LocalHub {
    conns: Mutex<HashMap<String, AgentConnection>>,
}

impl LocalHub {
    pub fn new() -> Self {
        Self::default()
    }

    fn current(&self, agent_id: &str) -> Option<AgentConnection> {
        lock(&self.conns).get(agent_id).cloned()
    }

    /// The epoch of the agent's connection here, if any.
    pub fn epoch_of(&self, agent_id: &str) -> Option<i64> {
        lock(&self.conns).get(agent_id).map(|c| c.epoch)
    }

    /// How many agents are held here.
    pub fn count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Every agent held here with its connection's epoch.
    pub fn held(&self) -> Vec<(String, i64)> {
        lock(&self.conns)
            .values()
            .map(|c| (c.agent_id.clone(), c.epoch))
            .collect()
    }
}

#[async_trait]
impl Hub for LocalHub {
    async fn attach(&self, conn: AgentConnection) -> Result<(), StaleConnection> {
        let replaced = {
            let mut conns = lock(&self.conns);
            if let Some(current) = conns.get(&conn.agent_id)
                && current.epoch > conn.epoch
            {
                return Err(StaleConnection {
                    agent_id: conn.agent_id.clone(),
                    current: current.epoch,
                    offered: conn.epoch,
                });
            }
            conns.insert(conn.agent_id.clone(), conn)
        };
        if let Some(old) = replaced {
            old.close(
                close_code::REPLACED,
                "replaced by a newer connection of this agent",
            );
        }
        Ok(())
    }

    async fn detach(&self, agent_id: &str, conn_id: u64) -> bool {
        let mut conns = lock(&self.conns);
        if conns.get(agent_id).is_some_and(|c| c.conn_id == conn_id) {
            conns.remove(agent_id);
            true
        } else {
            false
        }
    }

    async fn send(&self, agent_id: &str, msg: ServerMessage) -> Result<(), DeliveryError> {
        self.current(agent_id)
            .ok_or_else(|| DeliveryError::NotConnected(agent_id.to_owned()))?
            .send(msg)
    }

    async fn holds(&self, agent_id: &str) -> bool {
        lock(&self.conns).contains_key(agent_id)
    }

    async fn close_agent(&self, agent_id: &str, code: u16, reason: &str) {
        if let Some(conn) = self.current(agent_id) {
            conn.close(code, reason);
        }
    }

    async fn close_key(&self, key_id: Uuid, code: u16, reason: &str) {
        let matching: Vec<AgentConnection> = lock(&self.conns)
            .values()
            .filter(|c| c.key_id == key_id)
            .cloned()
            .collect();
        for conn in matching {
            conn.close(code, reason);
        }
    }

    async fn shutdown_all(&self, reason: &str) {
        let all: Vec<AgentConnection> = lock(&self.conns).values().cloned().collect();
        for conn in all {
            let _ = conn.send(ServerMessage::Shutdown {
                reason: reason.to_owned(),
            });
            conn.close(close_code::GOING_AWAY, reason);
        }
    }

    async fn agents(&self) -> Vec<String> {
        lock(&self.conns).keys().cloned().collect()
    }
}

/// Locks a mutex, tolerating poisoning: the maps behind it stay consistent at every step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(agent: &str, epoch: i64) -> (AgentConnection, mpsc::Receiver<ServerMessage>) {
        let (tx, rx) = mpsc::channel(2);
        let c = AgentConnection::new(
            agent.into(),
            epoch,
            Uuid::now_v7(),
            tx,
            Arc::new(Closer::default()),
        );
        (c, rx)
    }

    #[tokio::test]
    async fn old_connection_cleanup_never_evicts_the_new_one() {
        let hub = LocalHub::new();
        let (old, _rx1) = conn("a", 1);
        let (new, mut rx2) = conn("a", 2);
        hub.attach(old.clone()).await.ok();
        hub.attach(new.clone()).await.ok();
        assert_eq!(
            old.closer.reason().map(|r| r.0),
            Some(close_code::REPLACED),
            "the replaced connection is closed with 4001"
        );
        assert!(
            !hub.detach("a", old.conn_id).await,
            "old cleanup must not remove the new one"
        );
        assert!(hub.holds("a").await);
        hub.send("a", ServerMessage::Ping).await.ok();
        assert_eq!(rx2.recv().await, Some(ServerMessage::Ping));
        assert!(hub.detach("a", new.conn_id).await);
        assert!(!hub.holds("a").await);
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_and_the_connection_stays() {
        let hub = LocalHub::new();
        let (c, mut rx) = conn("a", 1);
        hub.attach(c.clone()).await.ok();
        let big = ServerMessage::Shutdown {
            reason: "x".repeat(MAX_MESSAGE_BYTES),
        };
        match hub.send("a", big).await {
            Err(DeliveryError::TooBig { size, limit }) => {
                assert!(size > limit, "{size} <= {limit}");
                assert_eq!(limit, MAX_MESSAGE_BYTES);
            }
            other => panic!("an oversized message was not refused: {other:?}"),
        }
        assert!(rx.try_recv().is_err(), "the oversized message was queued");
        assert_eq!(c.closer.reason(), None, "the connection was closed");
        hub.send("a", ServerMessage::Ping).await.ok();
        assert_eq!(rx.recv().await, Some(ServerMessage::Ping));
    }

    #[tokio::test]
    async fn an_older_epoch_cannot_replace_a_newer_one() {
        let hub = LocalHub::new();
        let (newer, _rx1) = conn("a", 5);
        let (older, _rx2) = conn("a", 4);
        assert!(hub.attach(newer.clone()).await.is_ok());
        assert!(hub.attach(older).await.is_err());
        assert!(!newer.closer.is_closed());
    }

    #[tokio::test]
    async fn a_full_queue_closes_only_that_connection() {
        let hub = LocalHub::new();
        let (slow, _rx1) = conn("slow", 1);
        let (fine, mut rx2) = conn("fine", 1);
        hub.attach(slow.clone()).await.ok();
        hub.attach(fine).await.ok();
        for _ in 0..2 {
            assert!(hub.send("slow", ServerMessage::Ping).await.is_ok());
        }
        assert!(matches!(
            hub.send("slow", ServerMessage::Ping).await,
            Err(DeliveryError::Overloaded(_))
        ));
        assert!(slow.closer.is_closed());
        assert!(hub.send("fine", ServerMessage::Ping).await.is_ok());
        assert_eq!(rx2.recv().await, Some(ServerMessage::Ping));
        assert!(matches!(
            hub.send("nobody", ServerMessage::Ping).await,
            Err(DeliveryError::NotConnected(_))
        ));
    }
}
