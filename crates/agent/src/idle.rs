//! Idle timeout: a session whose template sets `idle_timeout_secs` is hibernated by its agent
//! once it has had no viewer for that long.
//!
//! The agent is the one place that sees both ends: it starts the session (and so learns the
//! template's timeout) and it carries every viewer stream ([`crate::tunnel`]), on whichever
//! replica the viewer landed. [`IdleRuntime`] wraps the real runtime to learn about starts,
//! hibernations, wakes and stops, and serialises its own hibernation with the executor's actions
//! on the same session; [`sweep`] checks once a second and reports each idle hibernation to the
//! control plane as a `session_status`, which moves the session to `hibernated` like any other
//! observed state. A user wakes it again through the API.
//!
//! Timers live in memory: sessions adopted after an agent restart are not watched until the
//! agent starts them again (documented in `docs/ARCHITECTURE.md`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use streamspace_proto::SessionState;
use streamspace_proto::api::Template;
use streamspace_proto::wire::AgentMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::runtime::{Runtime, RuntimeError, SessionInfo};

/// How often [`sweep`] looks for idle sessions.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Watched {
    timeout: Duration,
    viewers: usize,
    idle_since: Instant,
    hibernated: bool,
}

/// Viewer counts and idle clocks of the sessions whose template has an idle timeout.
#[derive(Default)]
pub struct IdleWatch {
    sessions: Mutex<HashMap<Uuid, Watched>>,
}

impl IdleWatch {
    fn map(&self) -> MutexGuard<'_, HashMap<Uuid, Watched>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn track(&self, session_id: Uuid, info: &SessionInfo, timeout_secs: Option<u32>) {
        let Some(secs) = timeout_secs else {
            return;
        };
        let mut map = self.map();
        let entry = map.entry(session_id).or_insert(Watched {
            timeout: Duration::from_secs(u64::from(secs)),
            viewers: 0,
            idle_since: Instant::now(),
            hibernated: false,
        });
        entry.hibernated = info.state == SessionState::Hibernated;
    }

    fn set_hibernated(&self, session_id: Uuid, hibernated: bool) {
        if let Some(w) = self.map().get_mut(&session_id) {
            if w.hibernated && !hibernated {
                w.idle_since = Instant::now();
            }
            w.hibernated = hibernated;
        }
    }

    fn forget(&self, session_id: Uuid) {
        self.map().remove(&session_id);
    }

    /// Counts a viewer of `session_id` until the guard is dropped.
    pub fn viewer(self: &Arc<Self>, session_id: Uuid) -> ViewerGuard {
        if let Some(w) = self.map().get_mut(&session_id) {
            w.viewers += 1;
        }
        ViewerGuard {
            watch: self.clone(),
            session_id,
        }
    }

    /// Running sessions without a viewer for longer than their timeout.
    fn due(&self, now: Instant) -> Vec<Uuid> {
        self.map()
            .iter()
            .filter(|(_, w)| {
                !w.hibernated && w.viewers == 0 && now.duration_since(w.idle_since) >= w.timeout
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// One open viewer stream; see [`IdleWatch::viewer`].
pub struct ViewerGuard {
    watch: Arc<IdleWatch>,
    session_id: Uuid,
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        if let Some(w) = self.watch.map().get_mut(&self.session_id) {
            w.viewers = w.viewers.saturating_sub(1);
            if w.viewers == 0 {
                w.idle_since = Instant::now();
            }
        }
    }
}

/// The agent's runtime, watched for idle timeouts (see the module docs).
pub struct IdleRuntime {
    inner: Arc<dyn Runtime>,
    watch: Arc<IdleWatch>,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl IdleRuntime {
    pub fn new(inner: Arc<dyn Runtime>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            watch: Arc::new(IdleWatch::default()),
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn watch(&self) -> &Arc<IdleWatch> {
        &self.watch
    }

    fn lock(&self, session_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(session_id).or_default().clone()
    }

    /// Hibernates the session if it is still idle once its lock is held.
    async fn hibernate_if_idle(
        &self,
        session_id: Uuid,
    ) -> Result<Option<SessionInfo>, RuntimeError> {
        let lock = self.lock(session_id);
        let _held = lock.lock().await;
        if !self.watch.due(Instant::now()).contains(&session_id) {
            return Ok(None);
        }
        let info = self.inner.hibernate(session_id).await?;
        self.watch.set_hibernated(session_id, true);
        Ok(Some(info))
    }
}

#[async_trait]
impl Runtime for IdleRuntime {
    fn platform(&self) -> &'static str {
        self.inner.platform()
    }

    async fn start(
        &self,
        session_id: Uuid,
        template: &Template,
    ) -> Result<SessionInfo, RuntimeError> {
        let lock = self.lock(session_id);
        let _held = lock.lock().await;
        let info = self.inner.start(session_id, template).await?;
        self.watch
            .track(session_id, &info, template.idle_timeout_secs);
        Ok(info)
    }

    async fn stop(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        let lock = self.lock(session_id);
        let _held = lock.lock().await;
        self.inner.stop(session_id).await?;
        self.watch.forget(session_id);
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session_id);
        Ok(())
    }

    async fn hibernate(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let lock = self.lock(session_id);
        let _held = lock.lock().await;
        let info = self.inner.hibernate(session_id).await?;
        self.watch.set_hibernated(session_id, true);
        Ok(info)
    }

    async fn wake(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let lock = self.lock(session_id);
        let _held = lock.lock().await;
        let info = self.inner.wake(session_id).await?;
        self.watch.set_hibernated(session_id, false);
        Ok(info)
    }

    async fn status(&self, session_id: Uuid) -> Result<Option<SessionInfo>, RuntimeError> {
        self.inner.status(session_id).await
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        self.inner.list().await
    }

    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        self.inner.recover().await
    }
}

/// Hibernates idle sessions every [`SWEEP_INTERVAL`] until `shutdown`, reporting each one.
pub async fn sweep(
    runtime: Arc<IdleRuntime>,
    outbox: mpsc::Sender<AgentMessage>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
        for session_id in runtime.watch.due(Instant::now()) {
            match runtime.hibernate_if_idle(session_id).await {
                Ok(Some(info)) => {
                    tracing::info!(session_id = %session_id, "hibernated an idle session");
                    if outbox
                        .send(AgentMessage::SessionStatus(info.to_status()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(session_id = %session_id, error = %crate::Chain(&e), "could not hibernate an idle session");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: Uuid, state: SessionState) -> SessionInfo {
        SessionInfo {
            session_id: id,
            state,
            vnc_address: String::new(),
            message: None,
        }
    }

    #[test]
    fn only_unviewed_running_sessions_past_their_timeout_are_due() {
        let watch = Arc::new(IdleWatch::default());
        let (a, b, untracked) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        watch.track(a, &info(a, SessionState::Running), Some(10));
        watch.track(b, &info(b, SessionState::Running), Some(10));
        watch.track(untracked, &info(untracked, SessionState::Running), None);
        let later = Instant::now() + Duration::from_secs(11);
        assert_eq!(watch.due(Instant::now()), Vec::<Uuid>::new());
        let viewing = watch.viewer(b);
        assert_eq!(watch.due(later), vec![a], "a viewed session is never idle");
        drop(viewing);
        // The idle clock restarts when the last viewer leaves.
        let now = Instant::now();
        assert!(!watch.due(now + Duration::from_secs(9)).contains(&b));
        assert!(watch.due(now + Duration::from_secs(11)).contains(&b));
        watch.set_hibernated(a, true);
        assert!(
            !watch.due(later).contains(&a),
            "hibernated sessions are not due"
        );
        watch.forget(b);
        assert!(watch.due(later + Duration::from_secs(60)).is_empty());
    }
}
