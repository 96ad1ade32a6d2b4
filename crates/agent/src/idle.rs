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
//! The clocks survive an agent restart: every change is written to `idle.json` in the agent's
//! state directory (replaced atomically), with wall-clock times since monotonic instants mean
//! nothing to the next process. When the restarted agent re-adopts its sessions
//! ([`Runtime::recover`]), each one it finds there gets its timeout and idle clock back, so the
//! time a session was idle before the restart counts. A session that had a viewer when the agent
//! stopped starts its idle clock at the restart, since its viewers went with the old process.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use streamspace_proto::SessionState;
use streamspace_proto::api::Template;
use streamspace_proto::wire::AgentMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::runtime::{Runtime, RuntimeError, SessionInfo, VncTarget};

/// How often [`sweep`] looks for idle sessions.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct Watched {
    timeout: Duration,
    viewers: usize,
    idle_since: Instant,
    hibernated: bool,
}

/// One session's clock as `idle.json` keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedClock {
    timeout_secs: u64,
    /// Since when nobody has watched it; absent while it had a viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idle_since: Option<DateTime<Utc>>,
    hibernated: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedClocks {
    sessions: BTreeMap<Uuid, SavedClock>,
}

/// Viewer counts and idle clocks of the sessions whose template has an idle timeout.
pub struct IdleWatch {
    sessions: Mutex<HashMap<Uuid, Watched>>,
    /// `idle.json`; `None` keeps the clocks in memory only.
    file: Option<PathBuf>,
    /// One moment read on both clocks, to turn instants into wall-clock times and back.
    origin: (Instant, DateTime<Utc>),
}

impl IdleWatch {
    /// A watch that keeps its clocks in `file` (if any), starting now.
    pub fn new(file: Option<PathBuf>) -> Self {
        Self::with_origin(file, Instant::now(), Utc::now())
    }

    /// A watch whose instant `now` is the wall-clock time `wall_now` (tests inject both).
    fn with_origin(file: Option<PathBuf>, now: Instant, wall_now: DateTime<Utc>) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            file,
            origin: (now, wall_now),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Uuid, Watched>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the clocks and writes them to disk, under one lock so writes land in order.
    fn change<T>(&self, f: impl FnOnce(&mut HashMap<Uuid, Watched>) -> T) -> T {
        let mut map = self.map();
        let out = f(&mut map);
        self.save(&map);
        out
    }

    fn track(&self, session_id: Uuid, info: &SessionInfo, timeout_secs: Option<u32>) {
        let Some(secs) = timeout_secs else {
            return;
        };
        self.change(|map| {
            let entry = map.entry(session_id).or_insert(Watched {
                timeout: Duration::from_secs(u64::from(secs)),
                viewers: 0,
                idle_since: Instant::now(),
                hibernated: false,
            });
            entry.hibernated = info.state == SessionState::Hibernated;
        });
    }

    fn set_hibernated(&self, session_id: Uuid, hibernated: bool) {
        self.change(|map| {
            if let Some(w) = map.get_mut(&session_id) {
                if w.hibernated && !hibernated {
                    w.idle_since = Instant::now();
                }
                w.hibernated = hibernated;
            }
        });
    }

    fn forget(&self, session_id: Uuid) {
        self.change(|map| map.remove(&session_id));
    }

    /// Counts a viewer of `session_id` until the guard is dropped.
    pub fn viewer(self: &Arc<Self>, session_id: Uuid) -> ViewerGuard {
        self.change(|map| {
            if let Some(w) = map.get_mut(&session_id) {
                w.viewers += 1;
            }
        });
        ViewerGuard {
            watch: self.clone(),
            session_id,
        }
    }

    fn to_wall(&self, at: Instant) -> DateTime<Utc> {
        let (now, wall_now) = self.origin;
        let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let offset = if at >= now {
            TimeDelta::milliseconds(millis(at - now))
        } else {
            -TimeDelta::milliseconds(millis(now - at))
        };
        wall_now + offset
    }

    fn to_instant(&self, at: DateTime<Utc>) -> Instant {
        let (now, wall_now) = self.origin;
        let offset = (at - wall_now).num_milliseconds();
        let by = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            now + by
        } else {
            now.checked_sub(by).unwrap_or(now)
        }
    }

    /// Writes every clock to the file; a failure is logged (the clocks then restart with the
    /// agent, as they did before they were kept).
    fn save(&self, map: &HashMap<Uuid, Watched>) {
        let Some(file) = &self.file else {
            return;
        };
        let saved = SavedClocks {
            sessions: map
                .iter()
                .map(|(id, w)| {
                    let clock = SavedClock {
                        timeout_secs: w.timeout.as_secs(),
                        idle_since: (w.viewers == 0).then(|| self.to_wall(w.idle_since)),
                        hibernated: w.hibernated,
                    };
                    (*id, clock)
                })
                .collect(),
        };
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = file.with_extension("json.tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, file)
            });
        if let Err(e) = written {
            tracing::warn!(path = %file.display(), error = %e, "could not save the idle timers");
        }
    }

    /// Takes back the clocks an earlier agent process saved, for the sessions this one
    /// re-adopted (`recovered`, live ones only); forgets the rest. Returns how many it restored.
    fn restore(&self, recovered: &[SessionInfo]) -> usize {
        let Some(file) = &self.file else {
            return 0;
        };
        let saved: SavedClocks = match std::fs::read(file) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(saved) => saved,
                Err(e) => {
                    tracing::warn!(path = %file.display(), error = %e, "ignoring unreadable idle timers");
                    SavedClocks::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedClocks::default(),
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "could not read the idle timers");
                SavedClocks::default()
            }
        };
        let (restart, _) = self.origin;
        self.change(|map| {
            let mut restored = 0;
            for info in recovered.iter().filter(|s| s.is_live()) {
                let Some(clock) = saved.sessions.get(&info.session_id) else {
                    continue;
                };
                restored += 1;
                let hibernated = info.state == SessionState::Hibernated;
                let idle_since = match clock.idle_since {
                    Some(at) if !clock.hibernated => self.to_instant(at),
                    _ => restart,
                };
                map.insert(
                    info.session_id,
                    Watched {
                        timeout: Duration::from_secs(clock.timeout_secs),
                        viewers: 0,
                        idle_since,
                        hibernated,
                    },
                );
            }
            restored
        })
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
        self.watch.change(|map| {
            if let Some(w) = map.get_mut(&self.session_id) {
                w.viewers = w.viewers.saturating_sub(1);
                if w.viewers == 0 {
                    w.idle_since = Instant::now();
                }
            }
        });
    }
}

/// The agent's runtime, watched for idle timeouts (see the module docs).
pub struct IdleRuntime {
    inner: Arc<dyn Runtime>,
    watch: Arc<IdleWatch>,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl IdleRuntime {
    /// Wraps `inner`, keeping the idle clocks in `file` (the agent's `<state dir>/idle.json`)
    /// so that [`Runtime::recover`] can resume them after a restart; `None` keeps them in
    /// memory only.
    pub fn new(inner: Arc<dyn Runtime>, file: Option<PathBuf>) -> Arc<Self> {
        Self::with_watch(inner, IdleWatch::new(file))
    }

    fn with_watch(inner: Arc<dyn Runtime>, watch: IdleWatch) -> Arc<Self> {
        Arc::new(Self {
            inner,
            watch: Arc::new(watch),
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

    fn user_homes(&self) -> bool {
        self.inner.user_homes()
    }

    async fn start_with_user_home(
        &self,
        session_id: Uuid,
        template: &Template,
        user_id: Uuid,
    ) -> Result<SessionInfo, RuntimeError> {
        let lock = self.lock(session_id);
        let _held = lock.lock().await;
        let info = self
            .inner
            .start_with_user_home(session_id, template, user_id)
            .await?;
        self.watch
            .track(session_id, &info, template.idle_timeout_secs);
        Ok(info)
    }

    async fn delete_user_home(&self, user_id: Uuid) -> Result<(), RuntimeError> {
        self.inner.delete_user_home(user_id).await
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

    async fn vnc_target(&self, session_id: Uuid) -> Result<Option<VncTarget>, RuntimeError> {
        self.inner.vnc_target(session_id).await
    }

    async fn transfer_folder(
        &self,
        session_id: Uuid,
    ) -> Result<Box<dyn crate::transfer::TransferFolder>, RuntimeError> {
        self.inner.transfer_folder(session_id).await
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        self.inner.list().await
    }

    /// Re-adopts the sessions, then resumes the idle clocks saved for them.
    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        let recovered = self.inner.recover().await?;
        let resumed = self.watch.restore(&recovered);
        if resumed > 0 {
            tracing::info!(sessions = resumed, "resumed idle timers");
        }
        Ok(recovered)
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
        let watch = Arc::new(IdleWatch::new(None));
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

    /// The agent dies 60 s into four sessions' clocks and a new process starts 5 s later, with a
    /// monotonic clock of its own: each session it re-adopts resumes where it was.
    #[tokio::test(start_paused = true)]
    async fn a_restarted_agent_resumes_each_idle_clock() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("idle.json");
        let wall = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")?.with_timezone(&Utc);
        let (idle, viewed, asleep, gone) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let before = Arc::new(IdleWatch::with_origin(
            Some(file.clone()),
            Instant::now(),
            wall,
        ));
        for id in [idle, viewed, asleep, gone] {
            before.track(id, &info(id, SessionState::Running), Some(100));
        }
        before.set_hibernated(asleep, true);
        tokio::time::advance(Duration::from_secs(30)).await;
        // Still watched when the agent dies: its guard is never dropped.
        std::mem::forget(before.viewer(viewed));
        tokio::time::advance(Duration::from_secs(30)).await;

        tokio::time::advance(Duration::from_secs(5)).await;
        let after = IdleWatch::with_origin(
            Some(file.clone()),
            Instant::now(),
            wall + TimeDelta::seconds(65),
        );
        let recovered = [
            info(idle, SessionState::Running),
            info(viewed, SessionState::Running),
            info(asleep, SessionState::Hibernated),
        ];
        assert_eq!(after.restore(&recovered), 3);
        let now = Instant::now();
        assert!(
            after.due(now + Duration::from_secs(34)).is_empty(),
            "65 s of the 100 s had passed"
        );
        assert_eq!(after.due(now + Duration::from_secs(35)), vec![idle]);
        assert_eq!(
            after.due(now + Duration::from_secs(99)),
            vec![idle],
            "a session viewed when the agent died is idle from the restart on"
        );
        let mut due = after.due(now + Duration::from_secs(100));
        due.sort();
        let mut expected = vec![idle, viewed];
        expected.sort();
        assert_eq!(due, expected, "a hibernated session is never due");
        let saved: SavedClocks = serde_json::from_slice(&std::fs::read(&file)?)?;
        assert!(
            !saved.sessions.contains_key(&gone),
            "a session the agent no longer has is forgotten"
        );
        assert_eq!(saved.sessions.len(), 3);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_readable_file_nothing_is_resumed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("idle.json");
        let id = Uuid::now_v7();
        let recovered = [info(id, SessionState::Running)];
        assert_eq!(IdleWatch::new(Some(file.clone())).restore(&recovered), 0);
        std::fs::write(&file, b"{not json")?;
        assert_eq!(IdleWatch::new(Some(file)).restore(&recovered), 0);
        assert_eq!(IdleWatch::new(None).restore(&recovered), 0);
        Ok(())
    }
}
