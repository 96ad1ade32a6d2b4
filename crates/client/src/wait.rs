//! Waiting for a session to reach a state, by asking the API until it does.
//!
//! The one copy of this loop: the CLI's `session create --wait` and `session connect`, the
//! end-to-end tests and the benchmark harness all call [`Client::wait_for_session`]. A session
//! in a terminal state never moves again, so the wait ends there at once instead of running
//! into its deadline.

use std::time::{Duration, Instant};

use streamspace_proto::api::{Session, SessionState};
use uuid::Uuid;

use crate::{Client, ClientError};

/// Why [`Client::wait_for_session`] did not return the session in the wanted state.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The session reached a terminal state other than the one waited for.
    #[error("{}", ended_message(.0))]
    Ended(Box<Session>),
    /// The deadline passed; `last` is the session as last seen.
    #[error("session {} is still {} after {} s", .last.id, .last.state, .waited.as_secs_f64())]
    TimedOut {
        last: Box<Session>,
        waited: Duration,
    },
    /// Asking the control plane failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl WaitError {
    /// The session as last seen, when the control plane answered at all.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Self::Ended(s) | Self::TimedOut { last: s, .. } => Some(s),
            Self::Client(_) => None,
        }
    }
}

fn ended_message(session: &Session) -> String {
    match session.state {
        SessionState::Failed => format!(
            "session {} failed: {}",
            session.id,
            session
                .error_message
                .as_deref()
                .unwrap_or("no reason given")
        ),
        _ => format!("session {} has ended", session.id),
    }
}

impl Client {
    /// Asks for session `id` every poll interval ([`Client::with_poll_interval`]) until it is
    /// in state `want` and returns it then; fails when it ends in another state, when
    /// `deadline` passes, or when a request fails.
    pub async fn wait_for_session(
        &self,
        id: Uuid,
        want: SessionState,
        deadline: Instant,
    ) -> Result<Session, WaitError> {
        let started = Instant::now();
        loop {
            let session = self.get_session(id).await?;
            if session.state == want {
                return Ok(session);
            }
            if session.state.is_terminal() {
                return Err(WaitError::Ended(Box::new(session)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::TimedOut {
                    last: Box::new(session),
                    waited: now - started,
                });
            }
            tokio::time::sleep(self.poll.min(deadline - now)).await;
        }
    }
}
