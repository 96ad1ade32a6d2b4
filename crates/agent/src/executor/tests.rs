//! The executor against a scripted runtime: duplicate suppression, ordering, capacity, failures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use streamspace_proto::api::Template;
use streamspace_testkit::wait_until;

use super::*;
use crate::runtime::RuntimeError;

/// A runtime that keeps sessions in memory, counts calls, and can hold starts at a gate.
#[derive(Default)]
struct FakeRuntime {
    sessions: Mutex<HashMap<Uuid, SessionInfo>>,
    starts: AtomicUsize,
    stops: AtomicUsize,
    /// When set, each start waits for a permit.
    gate: Option<Arc<Semaphore>>,
}

impl FakeRuntime {
    fn sessions(&self) -> MutexGuard<'_, HashMap<Uuid, SessionInfo>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_state(&self, id: Uuid, state: SessionState, message: Option<&str>) {
        if let Some(s) = self.sessions().get_mut(&id) {
            s.state = state;
            s.message = message.map(str::to_owned);
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn platform(&self) -> &'static str {
        "fake"
    }

    async fn start(&self, id: Uuid, _t: &Template) -> Result<SessionInfo, RuntimeError> {
        if let Some(gate) = &self.gate {
            let _ = gate.acquire().await.map(|p| p.forget());
        }
        self.starts.fetch_add(1, Ordering::SeqCst);
        let n = self.starts.load(Ordering::SeqCst) as u32;
        let info = self
            .sessions()
            .entry(id)
            .or_insert_with(|| SessionInfo {
                session_id: id,
                state: SessionState::Running,
                vnc_address: format!("127.0.0.1:{}", 5900 + n),
                message: None,
            })
            .clone();
        Ok(info)
    }

    async fn stop(&self, id: Uuid) -> Result<(), RuntimeError> {
        self.stops.fetch_add(1, Ordering::SeqCst);
        self.sessions().remove(&id);
        Ok(())
    }

    async fn hibernate(&self, id: Uuid) -> Result<SessionInfo, RuntimeError> {
        self.set_state(id, SessionState::Hibernated, None);
        self.sessions()
            .get(&id)
            .cloned()
            .ok_or(RuntimeError::UnknownSession(id))
    }

    async fn wake(&self, id: Uuid) -> Result<SessionInfo, RuntimeError> {
        self.set_state(id, SessionState::Running, None);
        self.sessions()
            .get(&id)
            .cloned()
            .ok_or(RuntimeError::UnknownSession(id))
    }

    async fn status(&self, id: Uuid) -> Result<Option<SessionInfo>, RuntimeError> {
        Ok(self.sessions().get(&id).cloned())
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        Ok(self.sessions().values().cloned().collect())
    }

    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        Ok(Vec::new())
    }
}

struct Harness {
    executor: Arc<Executor>,
    outbox: mpsc::Receiver<AgentMessage>,
}

fn harness(runtime: Arc<FakeRuntime>, dir: &Path, max_sessions: u32) -> anyhow::Result<Harness> {
    let (tx, outbox) = mpsc::channel(64);
    let executor = Executor::start(runtime, dir, max_sessions, 4, 100, tx)?;
    Ok(Harness { executor, outbox })
}

impl Harness {
    async fn next_raw(&mut self) -> anyhow::Result<AgentMessage> {
        tokio::time::timeout(Duration::from_secs(10), self.outbox.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no message from the executor within 10 s"))?
            .ok_or_else(|| anyhow::anyhow!("outbox closed"))
    }

    /// The next message that is not a session status.
    async fn next(&mut self) -> anyhow::Result<AgentMessage> {
        loop {
            match self.next_raw().await? {
                AgentMessage::SessionStatus(_) => continue,
                other => return Ok(other),
            }
        }
    }
}

fn template() -> Template {
    let create = streamspace_proto::api::CreateTemplate {
        name: "xterm".into(),
        command: vec!["xterm".into()],
        ..Default::default()
    };
    Template::new(create, chrono::Utc::now())
}

fn command(action: Action, session_id: Uuid) -> CommandMessage {
    let payload = match action {
        Action::StartSession => json!({ "template": template() }),
        _ => Value::Null,
    };
    CommandMessage {
        command_id: Uuid::now_v7(),
        action,
        session_id: Some(session_id),
        payload,
        attempt: 1,
    }
}

#[tokio::test]
async fn start_is_acked_then_completed_with_the_address() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = Arc::new(FakeRuntime::default());
    let mut h = harness(rt.clone(), dir.path(), 10)?;
    let session = Uuid::now_v7();
    let cmd = command(Action::StartSession, session);
    h.executor.submit(cmd.clone()).await;
    assert_eq!(
        h.next_raw().await?,
        AgentMessage::Ack {
            command_id: cmd.command_id
        }
    );
    let AgentMessage::Complete { command_id, result } = h.next_raw().await? else {
        anyhow::bail!("expected complete");
    };
    assert_eq!(command_id, cmd.command_id);
    assert_eq!(result, json!({ "vnc_address": "127.0.0.1:5901" }));
    let AgentMessage::SessionStatus(status) = h.next_raw().await? else {
        anyhow::bail!("expected a session status after the start");
    };
    assert_eq!(
        (status.state, status.vnc_address.as_deref()),
        (SessionState::Running, Some("127.0.0.1:5901"))
    );
    Ok(())
}

#[tokio::test]
async fn duplicates_are_answered_from_the_log_even_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = Arc::new(FakeRuntime::default());
    let mut h = harness(rt.clone(), dir.path(), 10)?;
    let cmd = command(Action::StartSession, Uuid::now_v7());
    h.executor.submit(cmd.clone()).await;
    h.next().await?; // ack
    let first = h.next().await?;
    assert!(matches!(first, AgentMessage::Complete { .. }), "{first:?}");

    let mut resent = cmd.clone();
    resent.attempt = 2;
    h.executor.submit(resent.clone()).await;
    assert_eq!(
        h.next().await?,
        first,
        "a duplicate gets the earlier result"
    );
    assert_eq!(
        rt.starts.load(Ordering::SeqCst),
        1,
        "the duplicate did not run again"
    );

    // A new executor (a restarted agent) over the same state directory remembers it too.
    let rt2 = Arc::new(FakeRuntime::default());
    let mut h2 = harness(rt2.clone(), dir.path(), 10)?;
    h2.executor.submit(resent).await;
    assert_eq!(h2.next().await?, first);
    assert_eq!(
        rt2.starts.load(Ordering::SeqCst),
        0,
        "nothing ran after the restart"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_command_is_remembered_as_failed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut h = harness(Arc::new(FakeRuntime::default()), dir.path(), 10)?;
    let cmd = command(Action::HibernateSession, Uuid::now_v7());
    h.executor.submit(cmd.clone()).await;
    h.next().await?;
    let failed = h.next().await?;
    let AgentMessage::Failed { error, .. } = &failed else {
        anyhow::bail!("expected failed, got {failed:?}");
    };
    assert!(error.contains("no session"), "{error}");
    h.executor.submit(cmd).await;
    assert_eq!(h.next().await?, failed);
    Ok(())
}

#[tokio::test]
async fn a_duplicate_of_a_running_command_gets_only_another_ack() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = Arc::new(Semaphore::new(0));
    let rt = Arc::new(FakeRuntime {
        gate: Some(gate.clone()),
        ..Default::default()
    });
    let mut h = harness(rt.clone(), dir.path(), 10)?;
    let cmd = command(Action::StartSession, Uuid::now_v7());
    let ack = AgentMessage::Ack {
        command_id: cmd.command_id,
    };
    h.executor.submit(cmd.clone()).await;
    assert_eq!(h.next().await?, ack);
    h.executor.submit(cmd.clone()).await;
    assert_eq!(h.next().await?, ack, "the duplicate is acknowledged again");
    gate.add_permits(10);
    assert!(matches!(h.next().await?, AgentMessage::Complete { .. }));
    assert_eq!(rt.starts.load(Ordering::SeqCst), 1, "ran once");
    Ok(())
}

#[tokio::test]
async fn commands_without_a_session_or_over_capacity_fail_clearly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = Arc::new(FakeRuntime::default());
    let mut h = harness(rt.clone(), dir.path(), 1)?;
    let first = command(Action::StartSession, Uuid::now_v7());
    h.executor.submit(first.clone()).await;
    h.next().await?;
    assert!(matches!(h.next().await?, AgentMessage::Complete { .. }));

    let second = command(Action::StartSession, Uuid::now_v7());
    h.executor.submit(second).await;
    h.next().await?;
    let reply = h.next().await?;
    assert!(
        matches!(&reply, AgentMessage::Failed { error, .. } if error.contains("capacity")),
        "{reply:?}"
    );

    // Starting the existing session again is not a new session: it fits and is a no-op.
    let mut again = command(Action::StartSession, Uuid::nil());
    again.session_id = first.session_id;
    h.executor.submit(again).await;
    h.next().await?;
    assert!(matches!(h.next().await?, AgentMessage::Complete { .. }));
    assert_eq!(
        rt.starts.load(Ordering::SeqCst),
        2,
        "the runtime saw the idempotent start"
    );

    let mut no_session = command(Action::StopSession, Uuid::nil());
    no_session.session_id = None;
    h.executor.submit(no_session).await;
    h.next().await?;
    let reply = h.next().await?;
    assert!(
        matches!(&reply, AgentMessage::Failed { error, .. } if error.contains("no session_id")),
        "{reply:?}"
    );
    Ok(())
}

#[tokio::test]
async fn actions_on_one_session_run_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let gate = Arc::new(Semaphore::new(0));
    let rt = Arc::new(FakeRuntime {
        gate: Some(gate.clone()),
        ..Default::default()
    });
    let mut h = harness(rt.clone(), dir.path(), 10)?;
    let session = Uuid::now_v7();
    let start = command(Action::StartSession, session);
    let stop = command(Action::StopSession, session);
    h.executor.submit(start.clone()).await;
    h.executor.submit(stop.clone()).await;
    // Both commands hold the session's lock handle: the start inside the runtime, the stop
    // waiting for it instead of running on a session that does not exist yet.
    let executor = h.executor.clone();
    wait_until(
        "the stop to wait on the session lock",
        Duration::from_secs(5),
        || {
            let waiting = executor
                .session_locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&session)
                .map(Arc::strong_count);
            async move { (waiting == Some(3)).then_some(()) }
        },
    )
    .await?;
    gate.add_permits(1);
    let mut finished = Vec::new();
    while finished.len() < 2 {
        if let AgentMessage::Complete { command_id, .. } = h.next().await? {
            finished.push(command_id);
        }
    }
    assert_eq!(finished, vec![start.command_id, stop.command_id]);
    assert!(rt.sessions().is_empty(), "the stop ran after the start");
    Ok(())
}

#[tokio::test]
async fn dead_sessions_are_reported_once_and_until_registered() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = Arc::new(FakeRuntime::default());
    let mut h = harness(rt.clone(), dir.path(), 10)?;
    let session = Uuid::now_v7();
    h.executor
        .submit(command(Action::StartSession, session))
        .await;
    h.next().await?;
    h.next().await?;
    rt.set_state(session, SessionState::Failed, Some("xterm exited"));

    let failures = h.executor.collect_failures().await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].message.as_deref(), Some("xterm exited"));
    assert!(
        h.executor.collect_failures().await.is_empty(),
        "reported once"
    );
    assert_eq!(
        rt.stops.load(Ordering::SeqCst),
        1,
        "the failed session was cleaned up"
    );

    let registered = h.executor.registration_sessions().await;
    assert_eq!(
        registered.len(),
        1,
        "carried by the next registration: {registered:?}"
    );
    h.executor.confirm_failures(&registered);
    assert!(h.executor.registration_sessions().await.is_empty());
    Ok(())
}
