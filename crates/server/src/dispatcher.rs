//! The dispatcher: moves commands from the database to the agents connected here.
//!
//! Requests to "deliver for agent X" come from three places — a command created by this replica,
//! an agent (re)connecting, and a periodic sweep of the database — and go through one bounded,
//! de-duplicated queue to a bounded pool of workers. A worker reads the agent's deliverable
//! commands, claims each delivery attempt in the database (so no attempt is sent twice), and hands
//! the command to the hub. Commands for agents that are not connected stay `pending` in the
//! database until the agent connects. A request creating a command for an agent connected here
//! may instead take the agent's delivery turn ([`Dispatcher::take_turn`]) while no pass runs or
//! waits for it, insert the command claimed and send it itself. The sweep also fails stuck
//! commands and expires silent agents. Delivery is at least once; the agent answers duplicates
//! from memory.
//!
//! A command too big for the agent protocol's frame limit is failed rather than sent (the hub
//! refuses it): only a template stored before the API limited templates can make one, and sending
//! it would make the agent drop its connection, with every other session's traffic, again and
//! again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamspace_proto::api::{Command, CommandStatus};
use streamspace_proto::wire::{CommandMessage, ServerMessage, close_code};
use streamspace_store::{CommandOutcome, Store};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::ServerConfig;
use crate::hub::{DeliveryError, Hub};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Most commands read for one agent per pass; a worker loops until the agent has no more.
pub(crate) const BATCH: i64 = 100;

/// Queue of agents to deliver for. Each agent is queued at most once and delivered for by at
/// most one worker at a time, so concurrent wake-ups never send the same command twice.
pub(crate) struct Dispatcher {
    tx: mpsc::Sender<String>,
    agents: Mutex<HashMap<String, Entry>>,
    /// Agents that registered here and whose first pass over unfinished commands has not run
    /// yet, with the commands sent on the new connection meanwhile: that pass resends what a
    /// previous connection may have lost, not what this one has just been sent.
    sent_since_connect: Mutex<HashMap<String, FirstPass>>,
}

/// What an agent's new connection is owed: its first pass, which resends the unfinished
/// commands an earlier connection may have lost, except those sent on this one meanwhile.
struct FirstPass {
    /// The registration has asked for the pass (so the connection is attached).
    asked: bool,
    sent: HashSet<uuid::Uuid>,
}

/// Where an agent is in the dispatcher. The flags say whether to include unfinished
/// (`sent`/`acknowledged`) commands regardless of their timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Queued { unfinished: bool },
    Running { again: Option<bool> },
}

impl Dispatcher {
    /// `agent_id` is registering a new connection here: commands sent on it before its pass
    /// over unfinished commands are not sent again by that pass. Call before the connection can
    /// be delivered to.
    pub fn connected(&self, agent_id: &str) {
        let owed = FirstPass {
            asked: false,
            sent: HashSet::new(),
        };
        lock(&self.sent_since_connect).insert(agent_id.to_owned(), owed);
    }

    /// Notes a command sent to `agent_id`, if its connection is new (see [`Self::connected`]).
    fn note_sent(&self, agent_id: &str, command_id: uuid::Uuid) {
        if let Some(owed) = lock(&self.sent_since_connect).get_mut(agent_id) {
            owed.sent.insert(command_id);
        }
    }

    /// What was sent on `agent_id`'s new connection so far; forgets it (the pass over
    /// unfinished commands asks once).
    fn take_sent(&self, agent_id: &str) -> HashSet<uuid::Uuid> {
        lock(&self.sent_since_connect)
            .remove(agent_id)
            .map(|owed| owed.sent)
            .unwrap_or_default()
    }

    /// Whether `agent_id`'s connection here is still owed its first pass.
    fn owes_first_pass(&self, agent_id: &str) -> bool {
        lock(&self.sent_since_connect).contains_key(agent_id)
    }

    /// Agents whose connection asked for its first pass and is still owed it while no pass runs
    /// or waits for it: that pass was lost (its read failed, or its wake found the queue full).
    /// The sweep asks for it again.
    fn lost_first_passes(&self) -> Vec<String> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        lock(&self.sent_since_connect)
            .iter()
            .filter(|(agent_id, owed)| owed.asked && !agents.contains_key(*agent_id))
            .map(|(agent_id, _)| agent_id.clone())
            .collect()
    }

    /// Asks for delivery of `agent_id`'s commands. Never blocks; if the queue is full the request
    /// is dropped and the next sweep finds the work. `include_unfinished` asks for a new
    /// connection's first pass (see [`Self::connected`]).
    pub fn wake(&self, agent_id: &str, include_unfinished: bool) {
        if include_unfinished && let Some(owed) = lock(&self.sent_since_connect).get_mut(agent_id) {
            owed.asked = true;
        }
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        match agents.get_mut(agent_id) {
            Some(Entry::Queued { unfinished }) => *unfinished |= include_unfinished,
            Some(Entry::Running { again }) => {
                *again = Some(again.unwrap_or(false) | include_unfinished);
            }
            None => {
                if self.tx.try_send(agent_id.to_owned()).is_ok() {
                    let entry = Entry::Queued {
                        unfinished: include_unfinished,
                    };
                    agents.insert(agent_id.to_owned(), entry);
                } else {
                    tracing::debug!(agent_id, "dispatch queue full; the sweep will deliver");
                }
            }
        }
    }

    /// Wakes delivery for the agents other replicas name (see `crate::cluster::Events`), until
    /// `stop` or until nothing can name any more.
    pub async fn follow(&self, mut wakes: mpsc::Receiver<String>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                next = wakes.recv() => match next {
                    Some(agent_id) => self.wake(&agent_id, false),
                    None => return,
                },
            }
        }
    }

    /// A worker starts on `agent_id`; returns its include-unfinished flag.
    fn start(&self, agent_id: &str) -> bool {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let unfinished = match agents.get(agent_id) {
            Some(Entry::Queued { unfinished }) => *unfinished,
            _ => false,
        };
        agents.insert(agent_id.to_owned(), Entry::Running { again: None });
        unfinished
    }

    /// Takes `agent_id`'s delivery turn for a request that inserts a command and sends it
    /// itself (`NewCommand::send_now`): only when no pass runs or waits for the agent, and its
    /// first pass after a (re)connect (the one that resends unfinished commands) has run. Passes
    /// never overlap a turn: a wake meanwhile runs once the turn ends.
    pub fn take_turn(self: &Arc<Self>, agent_id: &str) -> Option<Turn> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if agents.contains_key(agent_id) || self.owes_first_pass(agent_id) {
            return None;
        }
        agents.insert(agent_id.to_owned(), Entry::Running { again: None });
        Some(Turn {
            dispatcher: self.clone(),
            agent_id: agent_id.to_owned(),
            pass: true,
        })
    }

    /// A worker is done with `agent_id`; queues it again if it was woken meanwhile.
    fn finish(&self, agent_id: &str) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        match agents.remove(agent_id) {
            Some(Entry::Running {
                again: Some(unfinished),
            }) if self.tx.try_send(agent_id.to_owned()).is_ok() => {
                agents.insert(agent_id.to_owned(), Entry::Queued { unfinished });
            }
            _ => {}
        }
    }
}

/// An agent's delivery turn, taken by a request (see [`Dispatcher::take_turn`]). Ending it
/// (dropping it) runs a pass if one was asked for meanwhile, or unless [`Turn::send`] or
/// [`Turn::release`] settled the turn's own command: a turn given up half way (its command
/// left pending, an error, a panic) leaves the work to a pass.
pub(crate) struct Turn {
    dispatcher: Arc<Dispatcher>,
    agent_id: String,
    pass: bool,
}

impl Turn {
    /// Sends `command`, which its creator inserted claimed in this turn; a pass follows the
    /// turn only if one was asked for meanwhile. False if the agent was gone (nothing was
    /// handed to it): the caller gives the claim back.
    pub(crate) async fn send(mut self, ctx: &DispatchContext, command: Command) -> bool {
        let command_id = command.command_id;
        let span = tracing::info_span!(
            "command",
            agent_id = %self.agent_id,
            command_id = %command_id,
            action = %command.action
        );
        let delivered = deliver_one(ctx, &self.agent_id, command, true)
            .instrument(span)
            .await;
        if let Delivered::Yes = delivered {
            self.dispatcher.note_sent(&self.agent_id, command_id);
        }
        // Sent, or failed as unsendable: done. The agent gone: not connected here any more,
        // so a pass here has nothing to do.
        self.pass = false;
        !matches!(delivered, Delivered::AgentGone)
    }

    /// Ends the turn with nothing of its own to deliver (its command was refused); a pass
    /// follows only if one was asked for meanwhile.
    pub(crate) fn release(mut self) {
        self.pass = false;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.pass {
            self.dispatcher.wake(&self.agent_id, false);
        }
        self.dispatcher.finish(&self.agent_id);
    }
}

/// Everything a worker or the sweep needs.
#[derive(Clone)]
pub(crate) struct DispatchContext {
    pub store: Arc<dyn Store>,
    /// Claims of due commands, batched across the workers.
    pub commands: Arc<crate::batch::CommandBatches>,
    pub hub: Arc<dyn Hub>,
    pub config: Arc<ServerConfig>,
    pub outcomes: Arc<crate::outcomes::Outcomes>,
}

/// Creates the dispatcher and starts its queue reader and sweep, owned by `shutdown`.
pub(crate) fn start(
    ctx: DispatchContext,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Arc<Dispatcher> {
    let capacity = ctx.config.max_agent_connections.max(64);
    let (tx, rx) = mpsc::channel(capacity);
    let dispatcher = Arc::new(Dispatcher {
        tx,
        agents: Mutex::new(HashMap::new()),
        sent_since_connect: Mutex::new(HashMap::new()),
    });
    let span = tracing::info_span!("dispatcher", replica_id = %ctx.config.replica_id);
    tasks.spawn(
        run_queue(
            ctx.clone(),
            dispatcher.clone(),
            rx,
            shutdown.clone(),
            tasks.clone(),
        )
        .instrument(span.clone()),
    );
    tasks.spawn(run_sweep(ctx, dispatcher.clone(), shutdown).instrument(span));
    dispatcher
}

async fn run_queue(
    ctx: DispatchContext,
    dispatcher: Arc<Dispatcher>,
    mut rx: mpsc::Receiver<String>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let workers = Arc::new(Semaphore::new(ctx.config.dispatcher_workers));
    loop {
        let agent_id = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = rx.recv() => match next {
                Some(agent_id) => agent_id,
                None => break,
            },
        };
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = workers.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let include_unfinished = dispatcher.start(&agent_id);
        let ctx = ctx.clone();
        let dispatcher = dispatcher.clone();
        let span = tracing::info_span!("deliver", agent_id = %agent_id);
        tasks.spawn(
            async move {
                deliver_for_agent(&ctx, &dispatcher, &agent_id, include_unfinished).await;
                dispatcher.finish(&agent_id);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Sends every deliverable command of `agent_id`, if it is connected here.
pub(crate) async fn deliver_for_agent(
    ctx: &DispatchContext,
    dispatcher: &Dispatcher,
    agent_id: &str,
    include_unfinished: bool,
) {
    // Only a connection's first pass resends what is unfinished: the registration's wake and
    // the sweep's repeat of a lost one may both ask, and the first to run answers for both.
    let mut include_unfinished = include_unfinished && dispatcher.owes_first_pass(agent_id);
    loop {
        if !ctx.hub.holds(agent_id).await {
            return;
        }
        // Usually one statement claims everything due (for this and every other agent whose
        // worker asks meanwhile: `CommandBatches`); after a (re)connect the unfinished commands
        // are read first (in batches too) and claimed one by one (acknowledged ones are not
        // claimed).
        let read = if include_unfinished {
            ctx.commands
                .unfinished(agent_id)
                .await
                .map_err(|e| e.to_string())
        } else {
            ctx.commands
                .claim_due(agent_id)
                .await
                .map_err(|e| e.to_string())
        };
        let claimed = !include_unfinished;
        let mut commands = match read {
            Ok(commands) => commands,
            Err(e) => {
                tracing::warn!(error = %e, "reading deliverable commands failed; the sweep retries");
                return;
            }
        };
        if include_unfinished {
            // Passes for one agent never overlap, so whatever was sent on its new connection
            // before this one began is in the set.
            let sent = dispatcher.take_sent(agent_id);
            commands.retain(|c| !sent.contains(&c.command_id));
        }
        let full_batch = commands.len() as i64 >= BATCH;
        let mut sent_any = false;
        for command in commands {
            let span = tracing::info_span!(
                "command",
                command_id = %command.command_id,
                action = %command.action
            );
            let command_id = command.command_id;
            match deliver_one(ctx, agent_id, command, claimed)
                .instrument(span)
                .await
            {
                Delivered::Yes => {
                    dispatcher.note_sent(agent_id, command_id);
                    sent_any = true;
                }
                Delivered::Skipped => {}
                Delivered::AgentGone => return,
            }
        }
        // Only a full batch that made progress can hide more work; unfinished commands were all
        // in this pass, so later passes look only at what is due.
        if !(full_batch && sent_any) {
            return;
        }
        include_unfinished = false;
    }
}

enum Delivered {
    Yes,
    Skipped,
    AgentGone,
}

/// Sends `command`, first claiming its attempt unless `claimed` says that is done.
async fn deliver_one(
    ctx: &DispatchContext,
    agent_id: &str,
    command: Command,
    claimed: bool,
) -> Delivered {
    let command_id = command.command_id;
    // An acknowledged command is with the agent already; after a reconnect it is sent again as
    // is (the agent answers a duplicate from memory) without claiming a new attempt.
    let command = if claimed || command.status == CommandStatus::Acknowledged {
        command
    } else {
        match ctx.store.claim_delivery(command_id, command.attempts).await {
            Ok(Some(claimed)) => claimed,
            Ok(None) => return Delivered::Skipped,
            Err(e) => {
                tracing::warn!(error = %e, "claiming a delivery failed; the sweep retries");
                return Delivered::Skipped;
            }
        }
    };
    let attempt = u32::try_from(command.attempts.max(1)).unwrap_or(1);
    let msg = ServerMessage::Command(CommandMessage {
        command_id,
        action: command.action,
        session_id: command.session_id,
        payload: command.payload,
        attempt,
    });
    match ctx.hub.send(agent_id, msg).await {
        Ok(()) => {
            if attempt == 1 {
                crate::metrics::command("sent");
                tracing::info!(session_id = ?command.session_id, "command sent");
            } else {
                crate::metrics::resend();
                tracing::debug!(attempt, "command sent again");
            }
            Delivered::Yes
        }
        Err(DeliveryError::TooBig { size, limit }) => {
            fail_unsendable(ctx, agent_id, command_id, size, limit).await;
            Delivered::Skipped
        }
        Err(e) => {
            // The claimed attempt stays `sent`; it is resent after its ack timeout, or at once
            // when the agent reconnects.
            tracing::debug!(error = %e, "agent went away during delivery");
            Delivered::AgentGone
        }
    }
}

/// Fails a command too big for the agent protocol (its template predates the API's limits):
/// sending it would make the agent drop its connection, and resending would do so again.
async fn fail_unsendable(
    ctx: &DispatchContext,
    agent_id: &str,
    command_id: uuid::Uuid,
    size: usize,
    limit: usize,
) {
    let error = format!(
        "the command is {size} bytes encoded, over the agent protocol's limit of {limit} bytes, \
         so it was not sent; its template is probably too large (see the template limits in \
         docs/OPERATIONS.md): recreate the template within them"
    );
    tracing::error!(
        size,
        limit,
        "command too big for the agent protocol; failing it"
    );
    let outcome = CommandOutcome::Failed(error);
    match ctx
        .store
        .finish_command(agent_id, command_id, &outcome)
        .await
    {
        Ok((command, true)) => {
            crate::metrics::command_finished(&command);
            ctx.outcomes.announce(&command).await;
        }
        Ok((_, false)) => {}
        Err(e) => {
            tracing::warn!(error = %e, "failing an oversized command failed; the sweep retries")
        }
    }
}

async fn run_sweep(ctx: DispatchContext, dispatcher: Arc<Dispatcher>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = sweep(&ctx, &dispatcher).await;
        match (&result, failing) {
            (Err(e), false) => tracing::error!(error = %e, "dispatcher sweep failing"),
            (Ok(()), true) => tracing::info!("dispatcher sweep recovered"),
            _ => {}
        }
        failing = result.is_err();
    }
}

/// One pass: fail what cannot finish, expire silent agents, wake delivery for connected agents.
pub(crate) async fn sweep(
    ctx: &DispatchContext,
    dispatcher: &Dispatcher,
) -> Result<(), streamspace_store::StoreError> {
    let config = &ctx.config;
    let failed = ctx
        .store
        .fail_stuck_commands(
            config.stuck_after.as_secs_f64(),
            config.pending_ttl.as_secs_f64(),
            config.ack_timeout.as_secs_f64(),
            config.max_attempts,
        )
        .await?;
    for command in failed {
        tracing::warn!(
            command_id = %command.command_id,
            agent_id = %command.agent_id,
            session_id = ?command.session_id,
            reason = command.error_message.as_deref().unwrap_or(""),
            "command failed: it could not finish in time"
        );
        ctx.outcomes.announce(&command).await;
    }
    let expired = ctx
        .store
        .expire_agents(config.liveness_timeout().as_secs_f64())
        .await?;
    for agent_id in expired {
        tracing::warn!(%agent_id, "agent marked offline: no heartbeat for 3 intervals");
        ctx.hub
            .close_agent(
                &agent_id,
                close_code::LIVENESS,
                "no heartbeat for 3 intervals",
            )
            .await;
    }
    for agent_id in dispatcher.lost_first_passes() {
        if ctx.hub.holds(&agent_id).await {
            tracing::debug!(%agent_id, "asking again for a connection's lost first pass");
            dispatcher.wake(&agent_id, true);
        }
    }
    let agents = ctx
        .store
        .agents_with_deliverable_commands(config.ack_timeout.as_secs_f64(), config.max_attempts)
        .await?;
    for agent_id in agents {
        if ctx.hub.holds(&agent_id).await {
            dispatcher.wake(&agent_id, false);
        }
    }
    Ok(())
}

/// How long to wait for in-flight work on shutdown.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatcher(capacity: usize) -> (Dispatcher, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity);
        let d = Dispatcher {
            tx,
            agents: Mutex::new(HashMap::new()),
            sent_since_connect: Mutex::new(HashMap::new()),
        };
        (d, rx)
    }

    #[test]
    fn the_pass_after_a_registration_knows_what_the_new_connection_was_sent() {
        let (d, _rx) = dispatcher(8);
        let (before, after) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        // Sent on an older connection: nothing is noted.
        d.note_sent("a", before);
        d.connected("a");
        d.note_sent("a", after);
        d.note_sent("b", after);
        assert_eq!(d.take_sent("a"), HashSet::from([after]));
        // Asked once: a later pass resends what is unfinished, as after any reconnect.
        assert!(d.take_sent("a").is_empty());
        assert!(d.take_sent("b").is_empty(), "b never registered here");
        // A newer connection starts afresh.
        d.connected("a");
        assert!(d.take_sent("a").is_empty());
    }

    #[test]
    fn wakes_are_deduplicated_and_never_run_twice_at_once() {
        let (d, mut rx) = dispatcher(8);
        d.wake("a", false);
        d.wake("a", true);
        d.wake("b", false);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("a"));
        assert_eq!(rx.try_recv().ok().as_deref(), Some("b"));
        assert!(rx.try_recv().is_err(), "a was queued twice");
        assert!(d.start("a"), "the include-unfinished flags merge");
        d.wake("a", false);
        assert!(
            rx.try_recv().is_err(),
            "a running agent is not queued again at once"
        );
        d.finish("a");
        assert_eq!(
            rx.try_recv().ok().as_deref(),
            Some("a"),
            "woken meanwhile: queued after"
        );
        assert!(!d.start("a"));
        d.finish("a");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_turn_excludes_passes_and_ends_with_one_only_when_owed() {
        let (d, mut rx) = dispatcher(8);
        let d = Arc::new(d);
        d.connected("a");
        assert!(
            d.take_turn("a").is_none(),
            "not before the first pass after a connect"
        );
        d.take_sent("a");
        let turn = d.take_turn("a").expect("idle: the turn is free");
        assert!(d.take_turn("a").is_none(), "one turn at a time");
        d.wake("a", false);
        assert!(rx.try_recv().is_err(), "a wake waits for the turn");
        turn.release();
        assert_eq!(
            rx.try_recv().ok().as_deref(),
            Some("a"),
            "woken meanwhile: a pass follows"
        );
        assert!(!d.start("a"));
        assert!(d.take_turn("a").is_none(), "no turn beside a pass");
        d.finish("a");
        d.take_turn("a").expect("free again").release();
        assert!(rx.try_recv().is_err(), "a released turn owes no pass");
        drop(d.take_turn("a").expect("free again"));
        assert_eq!(
            rx.try_recv().ok().as_deref(),
            Some("a"),
            "a turn given up leaves its work to a pass"
        );
    }

    #[test]
    fn a_lost_first_pass_is_asked_for_again() {
        let (d, mut rx) = dispatcher(1);
        d.connected("a");
        assert!(d.owes_first_pass("a"));
        assert!(
            d.lost_first_passes().is_empty(),
            "a registration that has not asked yet is still under way"
        );
        // The queue is full: the registration's wake is dropped.
        d.wake("b", false);
        d.wake("a", true);
        assert_eq!(d.lost_first_passes(), ["a"]);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("b"));
        // Asked again, it is queued, then runs: not lost meanwhile.
        d.wake("a", true);
        assert!(d.lost_first_passes().is_empty());
        assert_eq!(rx.try_recv().ok().as_deref(), Some("a"));
        assert!(d.start("a"));
        assert!(d.lost_first_passes().is_empty());
        // Its read failed: the pass ended owing still.
        d.finish("a");
        assert_eq!(d.lost_first_passes(), ["a"]);
        d.wake("a", true);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("a"));
        assert!(d.start("a"));
        d.take_sent("a");
        d.finish("a");
        assert!(!d.owes_first_pass("a"));
        assert!(d.lost_first_passes().is_empty(), "owed no more");
    }

    #[test]
    fn a_full_queue_drops_the_wake_for_the_sweep() {
        let (d, mut rx) = dispatcher(1);
        d.wake("a", false);
        d.wake("b", false);
        assert_eq!(rx.try_recv().ok().as_deref(), Some("a"));
        assert!(rx.try_recv().is_err());
        d.wake("b", false);
        assert_eq!(
            rx.try_recv().ok().as_deref(),
            Some("b"),
            "b can be queued later"
        );
    }
}
