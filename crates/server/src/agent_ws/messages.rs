//! What each agent message does, and the per-connection state it needs.
//!
//! Store failures while handling a message are logged and the connection stays up (the agent's
//! next report or the sweep repairs the state). Only protocol and policy violations end the
//! connection, through a [`Refusal`] naming the close code and the problem.

use std::collections::HashSet;
use std::sync::Arc;

use streamspace_proto::api::{Session, SessionState};
use streamspace_proto::wire::{
    AgentMessage, Capacity, Register, ServerMessage, SessionStatus, close_code,
};
use streamspace_store::{
    AgentHeartbeat, AgentRegistration, ApiKeyRecord, CommandOutcome, CommandReport,
    HeartbeatOutcome, StoreError,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::hub::{AgentConnection, Closer};
use crate::state::AppState;

/// Error message given to a session its agent no longer reports.
pub(crate) const LOST_SESSION: &str = "agent no longer has this session";
/// Close reason when a heartbeat finds the agent's key revoked, expired or gone.
const KEY_GONE: &str = "the agent key is no longer valid (checked on heartbeat)";
/// Close code for a server-side failure.
const INTERNAL: u16 = close_code::INTERNAL;
/// How long an acknowledgement waits before it is written. A command's result usually follows
/// its ack at once (a ping, an already running session); the result then stands for both and the
/// ack is never written. Nothing reads `acknowledged` in less than seconds (resends wait for the
/// ack timeout), so the delay changes no decision.
pub(super) const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(10);
/// Most acknowledgements held back at once; more are written at once.
const MAX_HELD_ACKS: usize = 256;

/// Why the server ends a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub code: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    pub fn policy(reason: impl Into<String>) -> Self {
        Self::new(close_code::POLICY, reason)
    }
}

/// The registered identity of a connection.
struct Registered {
    agent_id: String,
    epoch: i64,
    conn_id: u64,
    /// The agent asked for a `result_recorded` after each result it sends.
    result_receipts: bool,
}

/// One agent connection's state, owned by its reader.
pub(super) struct Conn {
    pub app: AppState,
    pub closer: Arc<Closer>,
    key: ApiKeyRecord,
    tx: mpsc::Sender<ServerMessage>,
    registered: Option<Registered>,
    /// Acknowledgements not written yet, oldest first, and when the oldest is due.
    held_acks: Vec<Uuid>,
    acks_due: Option<tokio::time::Instant>,
}

impl Conn {
    pub fn new(
        app: AppState,
        key: ApiKeyRecord,
        tx: mpsc::Sender<ServerMessage>,
        closer: Arc<Closer>,
    ) -> Self {
        Self {
            app,
            closer,
            key,
            tx,
            registered: None,
            held_acks: Vec::new(),
            acks_due: None,
        }
    }

    /// When the held acknowledgements must be written, if any are held.
    pub fn acks_due(&self) -> Option<tokio::time::Instant> {
        self.acks_due
    }

    /// Writes every held acknowledgement.
    pub async fn flush_acks(&mut self) {
        self.acks_due = None;
        let Some(agent_id) = self.registered.as_ref().map(|r| r.agent_id.clone()) else {
            return;
        };
        for command_id in std::mem::take(&mut self.held_acks) {
            self.ack(&agent_id, command_id).await;
        }
    }

    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    /// Ends the connection with the refusal's close code, logging why.
    pub fn refuse(&self, refusal: Refusal) {
        if !self.closer.is_closed() {
            tracing::warn!(code = refusal.code, reason = %refusal.reason, "closing agent connection");
        }
        self.closer.close(refusal.code, refusal.reason);
    }

    /// The replica is shutting down: tell the agent, then close.
    pub fn going_away(&self) {
        let _ = self.tx.try_send(ServerMessage::Shutdown {
            reason: "replica shutting down".into(),
        });
        self.closer
            .close(close_code::GOING_AWAY, "replica shutting down");
    }

    pub async fn handle(&mut self, msg: AgentMessage) -> Result<(), Refusal> {
        let Some(reg) = &self.registered else {
            return match msg {
                AgentMessage::Register(register) => self.register(register).await,
                _ => Err(Refusal::policy("the first message must be register")),
            };
        };
        let agent_id = reg.agent_id.clone();
        let epoch = reg.epoch;
        let receipts = reg.result_receipts;
        match msg {
            AgentMessage::Register(_) => Err(Refusal::policy(
                "register was already sent on this connection",
            )),
            AgentMessage::Heartbeat { capacity, .. } => {
                self.heartbeat(&agent_id, epoch, capacity).await
            }
            AgentMessage::Ack { command_id } => {
                if self.held_acks.len() >= MAX_HELD_ACKS {
                    self.flush_acks().await;
                }
                if !self.held_acks.contains(&command_id) {
                    self.held_acks.push(command_id);
                }
                self.acks_due
                    .get_or_insert_with(|| tokio::time::Instant::now() + ACK_DELAY);
                Ok(())
            }
            AgentMessage::Complete { command_id, result } => {
                self.forget_ack(command_id);
                let recorded = self
                    .finish(&agent_id, command_id, CommandOutcome::Completed(result))
                    .await;
                self.receipt(receipts && recorded, command_id);
                Ok(())
            }
            AgentMessage::Failed { command_id, error } => {
                self.forget_ack(command_id);
                let recorded = self
                    .finish(&agent_id, command_id, CommandOutcome::Failed(error))
                    .await;
                self.receipt(receipts && recorded, command_id);
                Ok(())
            }
            AgentMessage::SessionStatus(status) => self.session_status(&agent_id, status).await,
            AgentMessage::TunnelError {
                tunnel_id,
                session_id,
                error,
            } => {
                tracing::warn!(%tunnel_id, %session_id, %error, "the agent could not open a stream");
                self.app.tunnels.fail(
                    tunnel_id,
                    &agent_id,
                    &format!("the agent could not open the stream: {error}"),
                );
                Ok(())
            }
            AgentMessage::TunnelClose { tunnel_id, reason } => {
                tracing::debug!(%tunnel_id, %reason, "the agent ended a stream");
                Ok(())
            }
        }
    }

    async fn register(&mut self, reg: Register) -> Result<(), Refusal> {
        let bound = self.key.agent_id.clone().unwrap_or_default();
        if reg.agent_id != bound {
            return Err(Refusal::policy(format!(
                "this key is bound to agent {bound:?}, not {:?}",
                reg.agent_id
            )));
        }
        let app = self.app.clone();
        let registration = AgentRegistration {
            agent_id: reg.agent_id.clone(),
            platform: reg.platform.clone(),
            version: reg.version.clone(),
            max_sessions: clamp_i32(reg.capacity.max_sessions),
            labels: reg.labels.clone(),
            replica_id: app.config.replica_id.clone(),
            user_homes: reg.user_homes,
        };
        let epoch = app.registrar.call(registration).await.map_err(|e| {
            tracing::error!(error = %e, "recording the agent's registration failed");
            Refusal::new(
                INTERNAL,
                "the server could not record the registration; retry",
            )
        })?;
        tracing::Span::current().record("epoch", epoch);
        // Queued before the hub knows the connection, so `welcome` is always the first message.
        let welcome = ServerMessage::Welcome {
            accepted: true,
            heartbeat_interval_secs: app.config.heartbeat_interval_secs(),
            replica_id: app.config.replica_id.clone(),
            epoch,
            reason: None,
            result_receipts: reg.result_receipts,
        };
        if self.tx.try_send(welcome).is_err() {
            return Err(Refusal::new(INTERNAL, "could not queue welcome"));
        }
        let conn = AgentConnection::new(
            reg.agent_id.clone(),
            epoch,
            self.key.id,
            self.tx.clone(),
            self.closer.clone(),
        )
        .with_file_transfer(reg.file_transfer);
        let conn_id = conn.conn_id;
        app.dispatcher.connected(&reg.agent_id);
        app.hub
            .attach(conn)
            .await
            .map_err(|stale| Refusal::new(close_code::REPLACED, stale.to_string()))?;
        self.registered = Some(Registered {
            agent_id: reg.agent_id.clone(),
            epoch,
            conn_id,
            result_receipts: reg.result_receipts,
        });
        tracing::info!(
            platform = %reg.platform,
            version = %reg.version,
            max_sessions = reg.capacity.max_sessions,
            "agent connected"
        );
        self.reconcile(&reg.agent_id, &reg.sessions).await?;
        app.dispatcher.wake(&reg.agent_id, true);
        Ok(())
    }

    /// Brings the database in line with the sessions the agent reported on registration.
    async fn reconcile(&self, agent_id: &str, reported: &[SessionStatus]) -> Result<(), Refusal> {
        for status in reported {
            match self.owned_session(agent_id, status.session_id).await {
                Ok(Some(_)) => self.apply_status(status).await,
                Ok(None) => tracing::warn!(
                    session_id = %status.session_id,
                    "agent reported a session that is not assigned to it; ignored"
                ),
                Err(e) => {
                    tracing::warn!(session_id = %status.session_id, error = %e, "reading a reported session failed")
                }
            }
        }
        let held: HashSet<Uuid> = reported.iter().map(|s| s.session_id).collect();
        let sessions = match self.app.live_sessions.call(agent_id.to_owned()).await {
            Ok(sessions) => sessions,
            Err(e) => {
                tracing::warn!(error = %e, "listing sessions for reconciliation failed");
                return Ok(());
            }
        };
        let lost = sessions.into_iter().filter(|s| {
            s.agent_id.as_deref() == Some(agent_id)
                && matches!(s.state, SessionState::Running | SessionState::Hibernated)
                && !held.contains(&s.id)
        });
        for session in lost {
            match self
                .app
                .store
                .set_session_state(session.id, SessionState::Failed, None, Some(LOST_SESSION))
                .await
            {
                Ok((_, true)) => {
                    tracing::warn!(session_id = %session.id, "session failed: {LOST_SESSION}");
                    self.app
                        .session_left_running(session.id, SessionState::Failed)
                        .await;
                }
                Ok((_, false)) => {}
                Err(e) => {
                    tracing::warn!(session_id = %session.id, error = %e, "failing a lost session failed")
                }
            }
        }
        Ok(())
    }

    /// The session if it exists and is assigned to `agent_id`; `None` if it is another agent's.
    async fn owned_session(
        &self,
        agent_id: &str,
        session_id: Uuid,
    ) -> Result<Option<Session>, StoreError> {
        match self.app.store.get_session(session_id).await {
            Ok(s) if s.agent_id.as_deref() == Some(agent_id) => Ok(Some(s)),
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn apply_status(&self, status: &SessionStatus) {
        let message = match status.state {
            SessionState::Failed => status.message.as_deref(),
            _ => None,
        };
        match self
            .app
            .store
            .set_session_state(
                status.session_id,
                status.state,
                status.vnc_address.as_deref(),
                message,
            )
            .await
        {
            Ok((_, true)) => {
                tracing::info!(session_id = %status.session_id, state = %status.state, "session state changed");
                if status.state != SessionState::Running {
                    self.app
                        .session_left_running(status.session_id, status.state)
                        .await;
                }
            }
            Ok((session, false)) => tracing::debug!(
                session_id = %status.session_id,
                reported = %status.state,
                current = %session.state,
                "reported session state not applied"
            ),
            Err(e) => {
                tracing::warn!(session_id = %status.session_id, error = %e, "recording a session state failed")
            }
        }
    }

    /// Records a heartbeat, in a batch with other connections' (see `crate::batch`). It also
    /// checks the key the agent connected with — not revoked (revoking it, or deleting its
    /// agent), not expired: the fallback for a revocation announcement this replica missed
    /// (Redis away).
    async fn heartbeat(
        &self,
        agent_id: &str,
        epoch: i64,
        capacity: Capacity,
    ) -> Result<(), Refusal> {
        let beat = AgentHeartbeat {
            agent_id: agent_id.to_owned(),
            epoch,
            max_sessions: clamp_i32(capacity.max_sessions),
            replica_id: self.app.config.replica_id.clone(),
            key_id: self.key.id,
        };
        match self.app.heartbeats.call(beat).await {
            Ok(HeartbeatOutcome::Recorded) => Ok(()),
            Ok(HeartbeatOutcome::Replaced) => Err(Refusal::new(
                close_code::REPLACED,
                "a newer connection of this agent has registered",
            )),
            Ok(HeartbeatOutcome::KeyGone) => Err(Refusal::policy(KEY_GONE)),
            Err(e) => {
                tracing::warn!(error = %e, "recording a heartbeat failed");
                Ok(())
            }
        }
    }

    /// A result arrived: it moves the command past `acknowledged` itself.
    fn forget_ack(&mut self, command_id: Uuid) {
        self.held_acks.retain(|id| *id != command_id);
        if self.held_acks.is_empty() {
            self.acks_due = None;
        }
    }

    async fn ack(&self, agent_id: &str, command_id: Uuid) {
        match self.app.store.ack_command(agent_id, command_id).await {
            Ok(true) => tracing::debug!(%command_id, "command acknowledged"),
            Ok(false) => tracing::debug!(%command_id, "late or foreign ack ignored"),
            Err(e) => tracing::warn!(%command_id, error = %e, "recording an ack failed"),
        }
    }

    /// Records a command's result; whether the database now holds the command's outcome (this
    /// one, or an earlier one for a repeat), so the agent may stop resending it. A command that
    /// does not exist or is another agent's counts as settled too: no resend would change that.
    async fn finish(&self, agent_id: &str, command_id: Uuid, outcome: CommandOutcome) -> bool {
        let report = CommandReport {
            agent_id: agent_id.to_owned(),
            command_id,
            outcome,
        };
        let recorded = match self.app.commands.finish(report).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(%command_id, error = %e, "recording a command result failed; the agent will send it again");
                return false;
            }
        };
        match recorded {
            Ok((command, true)) => {
                self.app.outcomes.announce(&command).await;
                crate::metrics::command_finished(&command);
                tracing::info!(
                    %command_id,
                    session_id = ?command.session_id,
                    status = %command.status,
                    error = command.error_message.as_deref().unwrap_or(""),
                    "command finished"
                );
                if let Some(session_id) = command.session_id {
                    self.after_session_command(session_id).await;
                }
                true
            }
            Ok((_, false)) => {
                tracing::debug!(%command_id, "repeated command result ignored");
                true
            }
            Err(StoreError::NotFound { .. }) => {
                tracing::debug!(%command_id, "result for an unknown command ignored");
                true
            }
            Err(e) => {
                tracing::warn!(%command_id, error = %e, "recording a command result failed; the agent will send it again");
                false
            }
        }
    }

    /// Tells the agent its result is recorded, when it asked to be told. A full outbound queue
    /// drops the receipt: the agent then sends the result again, and gets one for that.
    fn receipt(&self, send: bool, command_id: Uuid) {
        if send
            && self
                .tx
                .try_send(ServerMessage::ResultRecorded { command_id })
                .is_err()
        {
            tracing::debug!(%command_id, "could not queue a result receipt");
        }
    }

    /// A command's result may have moved its session (stopped, hibernated, failed to start) in
    /// the same transaction that recorded it; the agent's status report that follows then
    /// changes nothing, so the session's state is looked at here.
    async fn after_session_command(&self, session_id: Uuid) {
        match self.app.store.get_session(session_id).await {
            Ok(session) if session.state != SessionState::Running => {
                self.app
                    .session_left_running(session_id, session.state)
                    .await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%session_id, error = %e, "reading a session after its command failed")
            }
        }
    }

    async fn session_status(&self, agent_id: &str, status: SessionStatus) -> Result<(), Refusal> {
        match self.app.store.get_session(status.session_id).await {
            Ok(session) if session.agent_id.as_deref() == Some(agent_id) => {
                self.apply_status(&status).await;
                Ok(())
            }
            Ok(_) => Err(Refusal::policy(format!(
                "session {} is not assigned to this agent",
                status.session_id
            ))),
            Err(StoreError::NotFound { .. }) => {
                tracing::debug!(session_id = %status.session_id, "status for an unknown session ignored");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(session_id = %status.session_id, error = %e, "reading a session failed");
                Ok(())
            }
        }
    }

    /// Removes this connection (only this one) from the hub and marks the agent offline if no
    /// newer connection has registered since.
    pub async fn cleanup(&mut self) {
        self.flush_acks().await;
        let Some(reg) = self.registered.take() else {
            return;
        };
        self.app.hub.detach(&reg.agent_id, reg.conn_id).await;
        match self
            .app
            .store
            .agent_disconnected(&reg.agent_id, reg.epoch)
            .await
        {
            Ok(true) => tracing::info!("agent marked offline"),
            Ok(false) => tracing::debug!("a newer connection holds the agent"),
            Err(e) => tracing::warn!(error = %e, "marking the agent offline failed"),
        }
    }
}

fn clamp_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
