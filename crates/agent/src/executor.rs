//! The command executor: acknowledges, de-duplicates and runs commands, and reports results.
//!
//! Shaped by the delivery contract (at least once on the wire, exactly once in effect):
//! - the reader hands each command to [`Executor::submit`], which answers at once — an `ack` for
//!   a new command, the earlier `complete`/`failed` for a duplicate of a finished one (from the
//!   persisted [`CommandLog`]), another `ack` for a duplicate still running — and queues new
//!   commands; it never runs an action itself, so a slow start never stalls the connection;
//! - a dispatcher takes queued commands and runs at most `max_concurrent` at once, each on its
//!   own task; actions on one session are serialised by a per-session lock;
//! - every message goes to the agent's bounded outbox, which the current connection's writer
//!   drains. A result produced while the agent is disconnected waits there for the next
//!   connection;
//! - results are delivered at least once, like commands: each `complete`/`failed` stays
//!   *unconfirmed* until the control plane answers `result_recorded`, and the connection sends
//!   unconfirmed results again after reconnecting and once a heartbeat interval has passed
//!   without a receipt ([`Executor::results_sent_before`],
//!   [`Executor::results_unanswered_for`]). A server that does not send receipts
//!   (it predates them) re-asks instead, by redelivering unfinished commands on reconnect; on
//!   such a connection nothing is kept.
//!
//! The executor also watches for sessions whose processes died ([`Executor::collect_failures`]),
//! cleans them up and reports each one as `failed` until a registration has carried it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use streamspace_proto::SessionState;
use streamspace_proto::api::Action;
use streamspace_proto::wire::{
    AgentMessage, CommandMessage, DeleteUserHomePayload, SessionStatus, StartSessionPayload,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use crate::Chain;
use crate::command_log::{CommandLog, Outcome};
use crate::runtime::{Runtime, RuntimeError, SessionInfo};

/// Commands waiting for a free slot; the reader waits when this is full.
const QUEUE_DEPTH: usize = 64;
/// Failures remembered until a registration carries them.
const MAX_UNCONFIRMED_FAILURES: usize = 1000;
/// Results kept until the control plane confirms them; beyond this the oldest is forgotten
/// (the server still re-asks for it when the agent reconnects).
const MAX_UNCONFIRMED_RESULTS: usize = 1000;

/// Runs commands against a [`Runtime`].
pub struct Executor {
    runtime: Arc<dyn Runtime>,
    max_sessions: u32,
    book: Mutex<Book>,
    session_locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    queue: mpsc::Sender<CommandMessage>,
    outbox: mpsc::Sender<AgentMessage>,
    unconfirmed_failures: Mutex<Vec<SessionStatus>>,
    unconfirmed_results: Mutex<UnconfirmedResults>,
    /// Whether the current (or next) connection confirms results; until a `welcome` says
    /// otherwise, results are kept.
    receipts: AtomicBool,
}

/// Results sent but not yet confirmed, oldest first, with when each was last sent.
#[derive(Default)]
struct UnconfirmedResults {
    order: VecDeque<Uuid>,
    results: HashMap<Uuid, (Outcome, Instant)>,
}

impl UnconfirmedResults {
    fn keep(&mut self, command_id: Uuid, outcome: Outcome, sent: Instant) {
        if self.results.insert(command_id, (outcome, sent)).is_none() {
            self.order.push_back(command_id);
        }
        while self.order.len() > MAX_UNCONFIRMED_RESULTS {
            if let Some(old) = self.order.pop_front() {
                self.results.remove(&old);
            }
        }
    }

    fn confirm(&mut self, command_id: Uuid) {
        if self.results.remove(&command_id).is_some() {
            self.order.retain(|id| *id != command_id);
        }
    }

    fn clear(&mut self) {
        self.order.clear();
        self.results.clear();
    }
}

/// Which commands are running and how recent ones ended; one lock so a duplicate always sees
/// one or the other.
struct Book {
    log: CommandLog,
    running: HashSet<Uuid>,
}

/// Why a command failed; its [`Chain`] is the `failed` message the user sees.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("{0} command has no session_id")]
    NoSession(Action),
    #[error("{0} is not a session action")]
    NotASessionAction(Action),
    #[error("invalid {0} payload")]
    Payload(Action, #[source] serde_json::Error),
    #[error(
        "template {0:?} asks for the user's own home, but the command names no user \
         (a control plane that predates user homes?)"
    )]
    NoUser(String),
    #[error("agent is at capacity: it runs {live} of at most {max} sessions")]
    AtCapacity { live: usize, max: u32 },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

enum Decision {
    Replay(Outcome),
    AckAgain,
    Run,
}

impl Executor {
    /// Opens the command log in `state_dir` and starts the dispatcher.
    pub fn start(
        runtime: Arc<dyn Runtime>,
        state_dir: &Path,
        max_sessions: u32,
        max_concurrent: usize,
        log_capacity: usize,
        outbox: mpsc::Sender<AgentMessage>,
    ) -> std::io::Result<Arc<Self>> {
        let log = CommandLog::open(state_dir.join("commands.jsonl"), log_capacity)?;
        let (queue, queued) = mpsc::channel(QUEUE_DEPTH);
        let executor = Arc::new(Self {
            runtime,
            max_sessions,
            book: Mutex::new(Book {
                log,
                running: HashSet::new(),
            }),
            session_locks: Mutex::new(HashMap::new()),
            queue,
            outbox,
            unconfirmed_failures: Mutex::new(Vec::new()),
            unconfirmed_results: Mutex::new(UnconfirmedResults::default()),
            receipts: AtomicBool::new(true),
        });
        tokio::spawn(dispatch(
            Arc::downgrade(&executor),
            queued,
            Arc::new(Semaphore::new(max_concurrent.max(1))),
        ));
        Ok(executor)
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Acknowledges or answers `command` at once and queues it if it is new.
    ///
    /// Cancellation-safe (the connection's reader is dropped when the connection ends): the
    /// queue slot is reserved before anything is recorded, and a command marked running is
    /// queued without waiting, so a dropped `submit` never leaves a command "running" forever.
    pub async fn submit(&self, command: CommandMessage) {
        let id = command.command_id;
        let Ok(slot) = self.queue.reserve().await else {
            tracing::error!(command_id = %id, "command queue closed; dropping command");
            return;
        };
        let decision = {
            let mut book = self.book();
            if let Some(outcome) = book.log.get(id) {
                Decision::Replay(outcome.clone())
            } else if book.running.contains(&id) {
                Decision::AckAgain
            } else {
                book.running.insert(id);
                Decision::Run
            }
        };
        match decision {
            Decision::Replay(outcome) => {
                tracing::info!(command_id = %id, attempt = command.attempt, "duplicate of a finished command; answering from the log");
                self.send_result(id, outcome).await;
            }
            Decision::AckAgain => {
                tracing::info!(command_id = %id, attempt = command.attempt, "duplicate of a running command");
                self.send(AgentMessage::Ack { command_id: id }).await;
            }
            Decision::Run => {
                slot.send(command);
                self.send(AgentMessage::Ack { command_id: id }).await;
            }
        }
    }

    async fn send(&self, message: AgentMessage) {
        if self.outbox.send(message).await.is_err() {
            tracing::debug!("outbox closed; the agent is stopping");
        }
    }

    /// Sends a command's result and keeps it until it is confirmed (when receipts are on).
    pub(crate) async fn send_result(&self, command_id: Uuid, outcome: Outcome) {
        if self.receipts.load(Ordering::SeqCst) {
            self.unconfirmed()
                .keep(command_id, outcome.clone(), Instant::now());
        }
        self.send(result_message(command_id, outcome)).await;
    }

    fn unconfirmed(&self) -> MutexGuard<'_, UnconfirmedResults> {
        self.unconfirmed_results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A `welcome` said whether this connection confirms results. Without receipts nothing is
    /// kept: such a server re-asks for unfinished commands whenever the agent reconnects.
    pub fn use_receipts(&self, on: bool) {
        self.receipts.store(on, Ordering::SeqCst);
        if !on {
            self.unconfirmed().clear();
        }
    }

    /// The control plane has recorded `command_id`'s result.
    pub fn confirm_result(&self, command_id: Uuid) {
        self.unconfirmed().confirm(command_id);
    }

    /// Results still unconfirmed that were last sent before `connected` (lost with an earlier
    /// connection, or never confirmed on it), oldest first; each counts as sent again at `now`.
    pub fn results_sent_before(&self, connected: Instant, now: Instant) -> Vec<AgentMessage> {
        self.take_for_resend(now, |sent| sent < connected)
    }

    /// Results still unconfirmed that were last sent at least `unanswered_for` before `now`,
    /// oldest first; each counts as sent again at `now`.
    pub fn results_unanswered_for(
        &self,
        now: Instant,
        unanswered_for: Duration,
    ) -> Vec<AgentMessage> {
        self.take_for_resend(now, |sent| {
            now.saturating_duration_since(sent) >= unanswered_for
        })
    }

    fn take_for_resend(&self, now: Instant, due: impl Fn(Instant) -> bool) -> Vec<AgentMessage> {
        let mut unconfirmed = self.unconfirmed();
        let UnconfirmedResults { order, results } = &mut *unconfirmed;
        let mut resend = Vec::new();
        for id in order.iter() {
            if let Some((outcome, sent)) = results.get_mut(id)
                && due(*sent)
            {
                *sent = now;
                resend.push(result_message(*id, outcome.clone()));
            }
        }
        resend
    }

    /// How many results wait for the control plane's confirmation.
    pub fn unconfirmed_results(&self) -> usize {
        self.unconfirmed().results.len()
    }

    async fn execute(&self, command: CommandMessage) {
        let id = command.command_id;
        let (outcome, status) = match self.perform(&command).await {
            Ok((result, status)) => (Outcome::Complete { result }, status),
            Err(e) => {
                let error = Chain(&e).to_string();
                tracing::warn!(command_id = %id, action = %command.action, %error, "command failed");
                let status = (command.action == Action::StartSession)
                    .then_some(command.session_id)
                    .flatten()
                    .map(|session_id| SessionStatus {
                        session_id,
                        state: SessionState::Failed,
                        vnc_address: None,
                        message: Some(error.clone()),
                    });
                (Outcome::Failed { error }, status)
            }
        };
        {
            let mut book = self.book();
            if let Err(e) = book.log.record(id, outcome.clone()) {
                tracing::error!(command_id = %id, path = %book.log.path().display(), error = %e,
                    "could not persist the command outcome; a redelivery after a restart will run it again");
            }
            book.running.remove(&id);
        }
        self.send_result(id, outcome).await;
        if let Some(status) = status {
            self.send(AgentMessage::SessionStatus(status)).await;
        }
    }

    /// Runs the action; the JSON result and the session's new status (none for `ping`), or why
    /// it failed.
    async fn perform(
        &self,
        command: &CommandMessage,
    ) -> Result<(Value, Option<SessionStatus>), CommandError> {
        match command.action {
            Action::Ping => return Ok((json!({ "pong": true }), None)),
            Action::DeleteUserHome => {
                let payload: DeleteUserHomePayload =
                    serde_json::from_value(command.payload.clone())
                        .map_err(|e| CommandError::Payload(command.action, e))?;
                self.runtime.delete_user_home(payload.user_id).await?;
                return Ok((json!({}), None));
            }
            _ => {}
        }
        let session_id = command
            .session_id
            .ok_or(CommandError::NoSession(command.action))?;
        let lock = self.session_lock(session_id);
        let result = {
            let _serialised = lock.lock().await;
            self.perform_locked(command, session_id).await
        };
        drop(lock);
        self.release_session_lock(session_id);
        result.map(|(value, status)| (value, Some(status)))
    }

    async fn perform_locked(
        &self,
        command: &CommandMessage,
        session_id: Uuid,
    ) -> Result<(Value, SessionStatus), CommandError> {
        let rt = &self.runtime;
        match command.action {
            Action::StartSession => {
                let payload: StartSessionPayload = serde_json::from_value(command.payload.clone())
                    .map_err(|e| CommandError::Payload(command.action, e))?;
                self.check_capacity(session_id).await?;
                let template = &payload.template;
                let info = if template.persistent_home.is_user() {
                    let user_id = payload
                        .user_id
                        .ok_or_else(|| CommandError::NoUser(template.name.clone()))?;
                    rt.start_with_user_home(session_id, template, user_id)
                        .await?
                } else {
                    rt.start(session_id, template).await?
                };
                Ok((address_result(&info), info.to_status()))
            }
            Action::StopSession => {
                rt.stop(session_id).await?;
                let status = SessionStatus {
                    session_id,
                    state: SessionState::Terminated,
                    vnc_address: None,
                    message: None,
                };
                Ok((json!({}), status))
            }
            Action::HibernateSession => {
                let info = rt.hibernate(session_id).await?;
                Ok((json!({}), info.to_status()))
            }
            Action::WakeSession => {
                let info = rt.wake(session_id).await?;
                Ok((address_result(&info), info.to_status()))
            }
            // Answered before any session lock is taken (see `perform`).
            Action::Ping | Action::DeleteUserHome => {
                Err(CommandError::NotASessionAction(command.action))
            }
        }
    }

    /// A new session must fit; an existing one (a repeated start) always does.
    async fn check_capacity(&self, session_id: Uuid) -> Result<(), CommandError> {
        let sessions = self.runtime.list().await?;
        let held = sessions.iter().any(|s| s.session_id == session_id);
        let live = sessions.iter().filter(|s| s.is_live()).count();
        if !held && live >= self.max_sessions as usize {
            return Err(CommandError::AtCapacity {
                live,
                max: self.max_sessions,
            });
        }
        Ok(())
    }

    fn session_lock(&self, session_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .session_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(session_id).or_default().clone()
    }

    /// Forgets the lock of a session nobody is waiting on, so the map does not grow forever.
    fn release_session_lock(&self, session_id: Uuid) {
        let mut locks = self
            .session_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if locks
            .get(&session_id)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(&session_id);
        }
    }

    /// Sessions counting against capacity.
    pub async fn active_sessions(&self) -> u32 {
        match self.runtime.list().await {
            Ok(list) => list.iter().filter(|s| s.is_live()).count() as u32,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not list sessions");
                0
            }
        }
    }

    /// Remembers failures found outside the executor (sessions lost while the agent was down).
    pub fn add_failures(&self, failures: impl IntoIterator<Item = SessionStatus>) {
        let mut list = self
            .unconfirmed_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.extend(failures);
        let excess = list.len().saturating_sub(MAX_UNCONFIRMED_FAILURES);
        list.drain(..excess);
    }

    /// Finds sessions whose processes died since the last call, cleans them up, and returns
    /// their `failed` status (each one once).
    pub async fn collect_failures(&self) -> Vec<SessionStatus> {
        let sessions = match self.runtime.list().await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not list sessions");
                return Vec::new();
            }
        };
        let mut failed = Vec::new();
        for info in sessions.into_iter().filter(|s| !s.is_live()) {
            if let Some(status) = self.reap_failed(info.session_id).await {
                failed.push(status);
            }
        }
        self.add_failures(failed.iter().cloned());
        failed
    }

    async fn reap_failed(&self, session_id: Uuid) -> Option<SessionStatus> {
        let lock = self.session_lock(session_id);
        let status = {
            let _serialised = lock.lock().await;
            // Looked at again under the lock: a command may have stopped it meanwhile.
            match self.runtime.status(session_id).await {
                Ok(Some(info)) if !info.is_live() => {
                    tracing::warn!(%session_id, message = ?info.message, "session failed");
                    if let Err(e) = self.runtime.stop(session_id).await {
                        tracing::warn!(%session_id, error = %Chain(&e), "could not clean up a failed session");
                    }
                    Some(info.to_status())
                }
                _ => None,
            }
        };
        drop(lock);
        self.release_session_lock(session_id);
        status
    }

    /// What `register` reports: every live session, plus failures not yet carried by an
    /// accepted registration (pass those to [`Self::confirm_failures`] once welcomed).
    pub async fn registration_sessions(&self) -> Vec<SessionStatus> {
        self.collect_failures().await;
        let mut sessions: Vec<SessionStatus> = match self.runtime.list().await {
            Ok(list) => list
                .iter()
                .filter(|s| s.is_live())
                .map(SessionInfo::to_status)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "could not list sessions");
                Vec::new()
            }
        };
        sessions.extend(
            self.unconfirmed_failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        sessions
    }

    /// The control plane accepted a registration that carried `reported`.
    pub fn confirm_failures(&self, reported: &[SessionStatus]) {
        let ids: HashSet<Uuid> = reported
            .iter()
            .filter(|s| s.state == SessionState::Failed)
            .map(|s| s.session_id)
            .collect();
        self.unconfirmed_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| !ids.contains(&s.session_id));
    }
}

/// Runs queued commands, at most as many at once as the semaphore allows. Ends when the
/// executor is dropped.
async fn dispatch(
    executor: Weak<Executor>,
    mut queued: mpsc::Receiver<CommandMessage>,
    slots: Arc<Semaphore>,
) {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(command) = queued.recv().await else {
            return;
        };
        let Some(executor) = executor.upgrade() else {
            return;
        };
        tokio::spawn(run_with_permit(executor, command, permit));
    }
}

async fn run_with_permit(
    executor: Arc<Executor>,
    command: CommandMessage,
    permit: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!(
        "command",
        command_id = %command.command_id,
        action = %command.action,
        session_id = ?command.session_id,
    );
    executor.execute(command).instrument(span).await;
    drop(permit);
}

fn address_result(info: &SessionInfo) -> Value {
    json!({ "vnc_address": info.vnc_address })
}

fn result_message(command_id: Uuid, outcome: Outcome) -> AgentMessage {
    match outcome {
        Outcome::Complete { result } => AgentMessage::Complete { command_id, result },
        Outcome::Failed { error } => AgentMessage::Failed { command_id, error },
    }
}

#[cfg(test)]
mod tests;
