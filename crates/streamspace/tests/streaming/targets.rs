//! Stand-ins for a session's VNC server: an echo server, a firehose that writes without end,
//! and a runtime that hands them out as the sessions' VNC addresses (and can fail a session).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use streamspace_agent::runtime::{Runtime, RuntimeError, SessionInfo};
use streamspace_proto::SessionState;
use streamspace_proto::api::Template;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use uuid::Uuid;

/// Echoes every connection's bytes back; returns its address.
pub async fn echo() -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rx, mut tx) = conn.into_split();
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
            });
        }
    });
    Ok(addr)
}

/// Writes to every connection until the peer goes away; counts connections that ended.
pub struct Firehose {
    pub addr: String,
    ended: Arc<AtomicUsize>,
}

impl Firehose {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let ended = Arc::new(AtomicUsize::new(0));
        let counter = ended.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let chunk = vec![7u8; 64 * 1024];
                    while conn.write_all(&chunk).await.is_ok() {}
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Self { addr, ended })
    }

    pub fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

/// A runtime whose sessions are the given addresses, handed out in the order sessions start.
pub struct TargetRuntime {
    targets: Mutex<VecDeque<String>>,
    sessions: Mutex<HashMap<Uuid, SessionInfo>>,
}

impl TargetRuntime {
    pub fn new(targets: impl IntoIterator<Item = String>) -> Self {
        Self {
            targets: Mutex::new(targets.into_iter().collect()),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, SessionInfo>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Runtime for TargetRuntime {
    fn platform(&self) -> &'static str {
        "process"
    }

    async fn start(&self, session_id: Uuid, _: &Template) -> Result<SessionInfo, RuntimeError> {
        if let Some(info) = self.sessions().get(&session_id) {
            return Ok(info.clone());
        }
        let target = self
            .targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .ok_or_else(|| RuntimeError::StartFailed("no test target left".into()))?;
        let info = SessionInfo {
            session_id,
            state: SessionState::Running,
            vnc_address: target,
            message: None,
        };
        self.sessions().insert(session_id, info.clone());
        Ok(info)
    }

    async fn stop(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        self.sessions().remove(&session_id);
        Ok(())
    }

    async fn hibernate(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        self.set_state(session_id, SessionState::Hibernated)
    }

    async fn wake(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        self.set_state(session_id, SessionState::Running)
    }

    async fn status(&self, session_id: Uuid) -> Result<Option<SessionInfo>, RuntimeError> {
        Ok(self.sessions().get(&session_id).cloned())
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        Ok(self.sessions().values().cloned().collect())
    }

    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        Ok(Vec::new())
    }
}

impl TargetRuntime {
    /// The session's VNC server dies: the runtime reports it `failed` (its connections stay
    /// open, so only the control plane can end the viewers).
    pub fn fail(&self, id: Uuid) -> Result<(), RuntimeError> {
        let mut info = self.set_state(id, SessionState::Failed)?;
        info.message = Some("the test failed this session".into());
        self.sessions().insert(id, info);
        Ok(())
    }

    fn set_state(&self, id: Uuid, state: SessionState) -> Result<SessionInfo, RuntimeError> {
        let mut sessions = self.sessions();
        let info = sessions
            .get_mut(&id)
            .ok_or(RuntimeError::UnknownSession(id))?;
        info.state = state;
        Ok(info.clone())
    }
}
