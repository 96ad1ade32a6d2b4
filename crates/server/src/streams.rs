//! The viewer streams of this replica (see [`crate::tunnel`] for how they are opened): tunnels
//! waiting for their agent's data connection, by one-time stream token, and spliced ones, by
//! session, so that a session leaving `running` can end its viewers here.
//!
//! A viewer lives only while its session is `running`. Whatever moves a session out of it
//! calls `AppState::session_left_running`, which closes the session's viewers here and
//! announces it to the other replicas; [`close_ended`], run every sweep interval, closes what
//! an announcement missed (Redis away, several replicas without Redis, a change the sweep made).
//!
//! Kept apart from the tunnel's endpoints because the agent endpoint needs it too (a
//! `tunnel_error` fails a waiting viewer, a status report closes a session's viewers), the way
//! the [`crate::hub`] keeps the agent connections apart from the agent endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::WebSocket;
use chrono::{DateTime, Utc};
use streamspace_client::raw_stream::RawStream;
use streamspace_proto::api::{SessionState, ShareMode};
use streamspace_proto::tunnel::close_code;
use streamspace_store::{Store, StoreError};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::hub::Closer;

/// Viewer streams spliced on this replica (a Prometheus gauge).
const STREAMS_GAUGE: &str = "streamspace_tunnel_streams";
/// Tunnels waiting for their agent's data connection.
const PENDING_GAUGE: &str = "streamspace_tunnel_pending";

/// A tunnel waiting for its agent's data connection.
pub(crate) struct Pending {
    pub tunnel_id: Uuid,
    pub session_id: Uuid,
    pub agent_id: String,
    deliver: oneshot::Sender<Opened>,
}

/// What the viewer's task learns: the agent's data connection, or why there is none.
pub(crate) type Opened = Result<DataConn, String>;

/// An agent's data connection as it arrived (directly or through the one hop).
pub(crate) enum DataConn {
    /// The stream's bytes in binary WebSocket frames: the fallback, and every file transfer
    /// (whose frames carry tags).
    WebSocket(Box<WebSocket>),
    /// The stream's bytes as they are, after an upgrade to `streamspace-stream/1`.
    Raw(RawStream),
}

impl Pending {
    /// Hands the agent's data connection to the viewer's task; false if the viewer is gone.
    pub fn deliver(self, conn: DataConn) -> bool {
        self.deliver.send(Ok(conn)).is_ok()
    }
}

/// Who watches an open stream, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watcher {
    pub user_id: Uuid,
    /// The share link they came through, if any: revoking it closes the stream.
    pub share_id: Option<Uuid>,
    pub mode: ShareMode,
    pub since: DateTime<Utc>,
}

/// The open streams of one session, by tunnel: who watches and how to close it.
type SessionStreams = HashMap<Uuid, (Watcher, Arc<Closer>)>;

/// An open stream of this replica, as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpenStream {
    pub tunnel_id: Uuid,
    pub watcher: Watcher,
}

/// The tunnels of this replica: pending ones by stream token, open ones by session.
#[derive(Default)]
pub(crate) struct Tunnels {
    pending: Mutex<HashMap<String, Pending>>,
    /// Open streams by session, then by tunnel.
    open: Mutex<HashMap<Uuid, SessionStreams>>,
    spliced: AtomicUsize,
}

impl Tunnels {
    /// Registers a pending tunnel under `token`. The returned guard removes it when dropped, so
    /// a viewer that goes away before the agent dials leaves nothing behind.
    pub fn expect(
        self: &Arc<Self>,
        token: String,
        tunnel_id: Uuid,
        session_id: Uuid,
        agent_id: String,
    ) -> (oneshot::Receiver<Opened>, PendingGuard) {
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            tunnel_id,
            session_id,
            agent_id,
            deliver: tx,
        };
        if lock(&self.pending).insert(token.clone(), pending).is_none() {
            metrics::gauge!(PENDING_GAUGE).increment(1.0);
        }
        let guard = PendingGuard {
            tunnels: self.clone(),
            token,
        };
        (rx, guard)
    }

    /// Takes the pending tunnel `token` names if `agent_id` is the agent it waits for. One use
    /// only: a second data connection with the same token finds nothing.
    pub fn take(&self, token: &str, agent_id: &str) -> Result<Pending, TakeError> {
        let mut pending = lock(&self.pending);
        match pending.get(token) {
            None => Err(TakeError::Unknown),
            Some(p) if p.agent_id != agent_id => Err(TakeError::OtherAgent),
            Some(_) => {
                let taken = pending.remove(token).ok_or(TakeError::Unknown);
                metrics::gauge!(PENDING_GAUGE).decrement(1.0);
                taken
            }
        }
    }

    /// The agent reported that it cannot open `tunnel_id` (`tunnel_error`): the viewer waiting
    /// for it is told at once instead of after the open timeout.
    pub fn fail(&self, tunnel_id: Uuid, agent_id: &str, error: &str) -> bool {
        let failed = {
            let mut pending = lock(&self.pending);
            let token = pending
                .iter()
                .find(|(_, p)| p.tunnel_id == tunnel_id && p.agent_id == agent_id)
                .map(|(token, _)| token.clone());
            token.and_then(|t| pending.remove(&t))
        };
        if failed.is_some() {
            metrics::gauge!(PENDING_GAUGE).decrement(1.0);
        }
        failed.is_some_and(|p| p.deliver.send(Err(error.to_owned())).is_ok())
    }

    /// Records an open stream of `session_id` watched by `watcher`; the guard forgets it.
    pub fn opened(
        self: &Arc<Self>,
        session_id: Uuid,
        tunnel_id: Uuid,
        watcher: Watcher,
    ) -> OpenGuard {
        let closer = Arc::new(Closer::default());
        lock(&self.open)
            .entry(session_id)
            .or_default()
            .insert(tunnel_id, (watcher, closer.clone()));
        self.spliced.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(STREAMS_GAUGE).increment(1.0);
        OpenGuard {
            tunnels: self.clone(),
            session_id,
            tunnel_id,
            closer,
        }
    }

    /// Ends every stream of `session_id` held here; how many were not ending already.
    pub fn close_session(&self, session_id: Uuid, code: u16, reason: &str) -> usize {
        let closers: Vec<Arc<Closer>> = lock(&self.open)
            .get(&session_id)
            .map(|m| {
                m.values()
                    .map(|(_, closer)| closer.clone())
                    .filter(|closer| !closer.is_closed())
                    .collect()
            })
            .unwrap_or_default();
        for closer in &closers {
            closer.close(code, reason);
        }
        closers.len()
    }

    /// Ends every stream held here that `user_id` watches (they lost access); how many.
    pub fn close_user(&self, user_id: Uuid, code: u16, reason: &str) -> usize {
        self.close_where(|_, w| w.user_id == user_id, code, reason)
    }

    /// Ends every stream held here opened through share link `share_id`; how many.
    pub fn close_share(&self, share_id: Uuid, code: u16, reason: &str) -> usize {
        self.close_where(|_, w| w.share_id == Some(share_id), code, reason)
    }

    /// Ends stream `tunnel_id` of `session_id` if it is held here; whether it was.
    pub fn close_stream(&self, session_id: Uuid, tunnel_id: Uuid, code: u16, reason: &str) -> bool {
        let closer = lock(&self.open)
            .get(&session_id)
            .and_then(|m| m.get(&tunnel_id))
            .map(|(_, closer)| closer.clone());
        closer.is_some_and(|closer| {
            closer.close(code, reason);
            true
        })
    }

    /// The streams of `session_id` held here.
    pub fn streams_of(&self, session_id: Uuid) -> Vec<OpenStream> {
        let mut streams: Vec<OpenStream> = lock(&self.open)
            .get(&session_id)
            .map(|m| {
                m.iter()
                    .map(|(tunnel_id, (watcher, _))| OpenStream {
                        tunnel_id: *tunnel_id,
                        watcher: *watcher,
                    })
                    .collect()
            })
            .unwrap_or_default();
        streams.sort_by_key(|s| s.tunnel_id);
        streams
    }

    /// The share links that streams held here came through.
    fn shares(&self) -> Vec<Uuid> {
        let mut shares: Vec<Uuid> = lock(&self.open)
            .values()
            .flat_map(|m| m.values().filter_map(|(w, _)| w.share_id))
            .collect();
        shares.sort_unstable();
        shares.dedup();
        shares
    }

    fn close_where(
        &self,
        which: impl Fn(Uuid, &Watcher) -> bool,
        code: u16,
        reason: &str,
    ) -> usize {
        let closers: Vec<Arc<Closer>> = lock(&self.open)
            .values()
            .flat_map(|m| m.iter())
            .filter(|(tunnel_id, (watcher, _))| which(**tunnel_id, watcher))
            .map(|(_, (_, closer))| closer.clone())
            .filter(|closer| !closer.is_closed())
            .collect();
        for closer in &closers {
            closer.close(code, reason);
        }
        closers.len()
    }

    /// The sessions with streams open here.
    pub fn sessions(&self) -> Vec<Uuid> {
        lock(&self.open).keys().copied().collect()
    }

    /// Streams spliced right now, and tunnels waiting for their agent.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.spliced.load(Ordering::Relaxed),
            lock(&self.pending).len(),
        )
    }
}

/// The close reason a viewer is given when its session moved to `state`.
pub(crate) fn ended_reason(state: SessionState) -> String {
    format!("the session is {state}")
}

/// Closes the streams held here of sessions that are no longer `running` (or gone), per the
/// database; how many sessions it closed streams of.
pub(crate) async fn close_ended(store: &dyn Store, tunnels: &Tunnels) -> usize {
    let mut closed = 0;
    for session_id in tunnels.sessions() {
        let reason = match store.get_session(session_id).await {
            Ok(session) if session.state == SessionState::Running => continue,
            Ok(session) => ended_reason(session.state),
            Err(StoreError::NotFound { .. }) => "the session is gone".to_owned(),
            Err(e) => {
                tracing::debug!(%session_id, error = %e, "checking a viewed session failed");
                continue;
            }
        };
        let viewers = tunnels.close_session(session_id, close_code::NORMAL, &reason);
        if viewers > 0 {
            tracing::info!(%session_id, %reason, viewers, "closed the viewers of a session that is not running");
            closed += 1;
        }
    }
    close_unshared(store, tunnels).await;
    closed
}

/// Closes the streams held here that came through a share link no longer active (expired, or
/// revoked on another replica whose announcement did not reach this one); how many links had
/// streams closed.
pub(crate) async fn close_unshared(store: &dyn Store, tunnels: &Tunnels) -> usize {
    let mut closed = 0;
    for share_id in tunnels.shares() {
        let reason = match store.get_share(share_id).await {
            Ok(share) if share.revoked_at.is_some() => SHARE_REVOKED,
            Ok(share) if !share.is_active(Utc::now()) => "the share link has expired",
            Ok(_) => continue,
            Err(StoreError::NotFound { .. }) => SHARE_REVOKED,
            Err(e) => {
                tracing::debug!(%share_id, error = %e, "checking a share link failed");
                continue;
            }
        };
        if tunnels.close_share(share_id, close_code::POLICY, reason) > 0 {
            tracing::info!(%share_id, %reason, "closed the viewers of a share link");
            closed += 1;
        }
    }
    closed
}

/// The close reason of a viewer whose share link was revoked.
pub(crate) const SHARE_REVOKED: &str = "the share link was revoked";

/// Why a data connection's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeError {
    Unknown,
    OtherAgent,
}

/// Removes a pending tunnel when dropped.
pub(crate) struct PendingGuard {
    tunnels: Arc<Tunnels>,
    token: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if lock(&self.tunnels.pending).remove(&self.token).is_some() {
            metrics::gauge!(PENDING_GAUGE).decrement(1.0);
        }
    }
}

/// An open stream's registration; dropping it forgets the stream.
pub(crate) struct OpenGuard {
    tunnels: Arc<Tunnels>,
    session_id: Uuid,
    tunnel_id: Uuid,
    pub closer: Arc<Closer>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        {
            let mut open = lock(&self.tunnels.open);
            if let Some(streams) = open.get_mut(&self.session_id) {
                streams.remove(&self.tunnel_id);
                if streams.is_empty() {
                    open.remove(&self.session_id);
                }
            }
        }
        self.tunnels.spliced.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(STREAMS_GAUGE).decrement(1.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_token_works_once_and_only_for_its_agent() {
        let tunnels = Arc::new(Tunnels::default());
        let (_rx, _guard) =
            tunnels.expect("sst_t".into(), Uuid::now_v7(), Uuid::now_v7(), "a".into());
        assert_eq!(
            tunnels.take("sst_t", "b").err(),
            Some(TakeError::OtherAgent)
        );
        assert!(tunnels.take("sst_t", "a").is_ok());
        assert_eq!(tunnels.take("sst_t", "a").err(), Some(TakeError::Unknown));
    }

    fn watcher(user_id: Uuid) -> Watcher {
        Watcher {
            user_id,
            share_id: None,
            mode: ShareMode::Control,
            since: Utc::now(),
        }
    }

    #[test]
    fn guards_leave_nothing_behind() {
        let tunnels = Arc::new(Tunnels::default());
        let session = Uuid::now_v7();
        {
            let (_rx, _guard) = tunnels.expect("sst_x".into(), Uuid::now_v7(), session, "a".into());
            let open = tunnels.opened(session, Uuid::now_v7(), watcher(Uuid::now_v7()));
            assert_eq!(tunnels.counts(), (1, 1));
            assert_eq!(tunnels.sessions(), [session]);
            assert_eq!(tunnels.close_session(session, 1000, "session ended"), 1);
            assert!(open.closer.is_closed());
            assert_eq!(
                tunnels.close_session(session, 1000, "session ended"),
                0,
                "a stream already ending is not counted again"
            );
        }
        assert_eq!(tunnels.counts(), (0, 0));
        assert!(lock(&tunnels.open).is_empty());
    }

    /// A running session, placed on agent `a1`.
    async fn running_session(store: &dyn Store) -> anyhow::Result<Uuid> {
        let id = Uuid::now_v7();
        let size = crate::config::DEFAULT_SESSION_SIZE;
        let new = streamspace_store::NewSession {
            id,
            template: "xterm".into(),
            owner: "admin".into(),
            owner_id: streamspace_store::BOOTSTRAP_ADMIN_ID,
            command_id: Uuid::now_v7(),
            payload: serde_json::json!({}),
            platform: None,
            quota: Default::default(),
            size,
            default_size: size,
            user_home: None,
        };
        store
            .create_session(
                &new,
                &streamspace_store::AuditEntry::system(
                    "session.create",
                    id.to_string(),
                    serde_json::json!({}),
                ),
            )
            .await?;
        for state in [SessionState::Starting, SessionState::Running] {
            store.set_session_state(id, state, None, None).await?;
        }
        Ok(id)
    }

    #[tokio::test]
    async fn the_check_closes_the_viewers_of_sessions_not_running() -> anyhow::Result<()> {
        let db = streamspace_testkit::TestDatabase::sqlite()?;
        streamspace_store::migrate::up(db.url()).await?;
        let store = streamspace_store::open(db.url()).await?;
        let agent = streamspace_store::AgentRegistration {
            agent_id: "a1".into(),
            platform: "process".into(),
            version: "0".into(),
            max_sessions: 5,
            labels: Default::default(),
            replica_id: "r1".into(),
            user_homes: false,
        };
        store.register_agent(&agent).await?;
        let running = running_session(store.as_ref()).await?;
        let hibernated = running_session(store.as_ref()).await?;
        store
            .set_session_state(hibernated, SessionState::Hibernated, None, None)
            .await?;
        let tunnels = Arc::new(Tunnels::default());
        let [watching, frozen, gone] = [running, hibernated, Uuid::now_v7()]
            .map(|session| tunnels.opened(session, Uuid::now_v7(), watcher(Uuid::now_v7())));

        assert_eq!(close_ended(store.as_ref(), &tunnels).await, 2);
        assert!(!watching.closer.is_closed(), "a running session's viewer");
        assert_eq!(
            frozen.closer.reason(),
            Some((1000, "the session is hibernated".into()))
        );
        assert_eq!(
            gone.closer.reason(),
            Some((1000, "the session is gone".into()))
        );
        assert_eq!(
            close_ended(store.as_ref(), &tunnels).await,
            0,
            "viewers already closing are not closed again"
        );
        Ok(())
    }

    #[test]
    fn a_user_who_loses_access_loses_only_their_streams() {
        let tunnels = Arc::new(Tunnels::default());
        let (session, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let hers = tunnels.opened(session, Uuid::now_v7(), watcher(alice));
        let his = tunnels.opened(session, Uuid::now_v7(), watcher(bob));
        assert_eq!(tunnels.close_user(alice, 1008, "access revoked"), 1);
        assert!(hers.closer.is_closed() && !his.closer.is_closed());
    }

    #[test]
    fn a_revoked_link_or_a_kick_closes_only_its_streams() {
        let tunnels = Arc::new(Tunnels::default());
        let (session, link) = (Uuid::now_v7(), Uuid::now_v7());
        let owner = tunnels.opened(session, Uuid::now_v7(), watcher(Uuid::now_v7()));
        let shared = Watcher {
            share_id: Some(link),
            mode: ShareMode::ViewOnly,
            ..watcher(Uuid::now_v7())
        };
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let a = tunnels.opened(session, first, shared);
        let b = tunnels.opened(session, second, shared);
        assert_eq!(tunnels.shares(), [link]);
        assert_eq!(tunnels.streams_of(session).len(), 3);
        assert!(tunnels.close_stream(session, first, 1008, "disconnected by the owner"));
        assert!(a.closer.is_closed() && !b.closer.is_closed());
        assert!(!tunnels.close_stream(Uuid::now_v7(), second, 1008, "no such session"));
        assert_eq!(tunnels.close_share(link, 1008, SHARE_REVOKED), 1);
        assert!(b.closer.is_closed() && !owner.closer.is_closed());
    }
}
