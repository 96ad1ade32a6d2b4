//! Group commit: many callers' requests carried out together, one database round trip per
//! batch instead of one per request.
//!
//! A [`Batcher`] runs one task. It waits for a request, takes every other one already queued
//! (up to the batch size) and hands them to its work function at once; requests that arrive
//! while its batches in flight (a set number, often one) are busy form the next batch. So a
//! lone request waits for nothing but its own round trip,
//! and a storm — ten thousand agents reconnecting after their replica died — is carried in a
//! few hundred statements, queueing in memory here rather than for the database pool's
//! connections, which the replica's other work still finds free.

use std::future::Future;
use std::sync::Arc;

use streamspace_proto::api::Command;
use streamspace_store::{CommandReport, NewCommand, Store};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Why a batched request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BatchError {
    /// The batch failed; every request in it gets the same message.
    #[error("{0}")]
    Failed(String),
    /// The replica is shutting down.
    #[error("the replica is shutting down")]
    Stopped,
}

struct Job<Req, Resp> {
    request: Req,
    reply: oneshot::Sender<Result<Resp, BatchError>>,
}

/// A queue of requests carried out in batches (see the module's documentation).
pub(crate) struct Batcher<Req, Resp> {
    tx: mpsc::Sender<Job<Req, Resp>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the batching task: `work` gets at most `max_batch` requests at a time and must
    /// answer each, in order; at most `in_flight` batches are carried out at once (requests
    /// queue while that many are). The task ends with `stop` or when the last handle is
    /// dropped.
    pub(crate) fn start<F, Fut>(
        max_batch: usize,
        in_flight: usize,
        stop: CancellationToken,
        mut work: F,
    ) -> Self
    where
        F: FnMut(Vec<Req>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<Resp>, String>> + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let (tx, mut rx) = mpsc::channel::<Job<Req, Resp>>(max_batch * 4);
        tokio::spawn(async move {
            let mut jobs = Vec::with_capacity(max_batch);
            loop {
                // A free slot first: while every slot is busy, requests gather in the queue.
                let slot = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                };
                let taken = tokio::select! {
                    biased;
                    () = stop.cancelled() => return,
                    taken = rx.recv_many(&mut jobs, max_batch) => taken,
                };
                if taken == 0 {
                    return;
                }
                let (requests, replies): (Vec<Req>, Vec<_>) =
                    jobs.drain(..).map(|j| (j.request, j.reply)).unzip();
                let batch = work(requests);
                let stop = stop.clone();
                tokio::spawn(async move {
                    let outcome = tokio::select! {
                        biased;
                        () = stop.cancelled() => return,
                        outcome = batch => outcome,
                    };
                    drop(slot);
                    answer(replies, outcome);
                });
            }
        });
        Self { tx }
    }

    /// Queues `request` and waits for its answer.
    pub(crate) async fn call(&self, request: Req) -> Result<Resp, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { request, reply })
            .await
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

/// Hands each caller its answer, or every caller the batch's failure.
fn answer<Resp>(
    replies: Vec<oneshot::Sender<Result<Resp, BatchError>>>,
    outcome: Result<Vec<Resp>, String>,
) {
    match outcome {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Ok(answers) => {
            let e = BatchError::Failed(format!(
                "a batch of {} requests got {} answers",
                replies.len(),
                answers.len()
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(message) => {
            for reply in replies {
                let _ = reply.send(Err(BatchError::Failed(message.clone())));
            }
        }
    }
}

/// A batcher whose every batch is one `call` on the store.
pub(crate) fn store_batcher<Req, Resp, F, Fut>(
    store: &Arc<dyn Store>,
    max_batch: usize,
    in_flight: usize,
    stop: CancellationToken,
    call: F,
) -> Batcher<Req, Resp>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Arc<dyn Store>, Vec<Req>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = streamspace_store::Result<Vec<Resp>>> + Send + 'static,
{
    let store = store.clone();
    Batcher::start(max_batch, in_flight, stop, move |requests| {
        let batch = call(store.clone(), requests);
        async move { batch.await.map_err(|e| e.to_string()) }
    })
}

/// A replica's command writes, carried in batches (see `crate::batch`): pings the API
/// creates, the dispatcher's claims of what is due for an agent, and the results agents
/// report; also the read of a (re)connected agent's unfinished commands. Under load each is
/// one statement for many commands; a lone one waits for nothing but its own round trip.
pub(crate) struct CommandBatches {
    inserts: Batcher<NewCommand, streamspace_store::Result<Command>>,
    claims: Batcher<String, Vec<Command>>,
    unfinished: Batcher<String, Vec<Command>>,
    reports: Batcher<CommandReport, streamspace_store::Result<(Command, bool)>>,
}

/// The most commands (or agents, for claims) one batch of [`CommandBatches`] carries.
const COMMAND_BATCH: usize = 256;
/// Batches of each kind carried out at once: a few, so that a lone command does not wait for
/// another's round trip, while a burst still gathers into batches when they are all busy.
const COMMAND_BATCHES_IN_FLIGHT: usize = 4;

impl CommandBatches {
    /// Starts the four batchers; claims take at most `claim_limit` commands per agent with
    /// the replica's ack timeout and attempt limit.
    pub(crate) fn start(
        store: &Arc<dyn Store>,
        config: &crate::config::ServerConfig,
        claim_limit: i64,
        stop: CancellationToken,
    ) -> Self {
        let (ack_timeout, max_attempts) = (config.ack_timeout.as_secs_f64(), config.max_attempts);
        Self {
            inserts: store_batcher(
                store,
                COMMAND_BATCH,
                COMMAND_BATCHES_IN_FLIGHT,
                stop.clone(),
                |store, new| async move { store.create_commands(&new).await },
            ),
            claims: store_batcher(
                store,
                COMMAND_BATCH,
                COMMAND_BATCHES_IN_FLIGHT,
                stop.clone(),
                move |store, agents| async move {
                    store
                        .claim_due_commands_of(&agents, ack_timeout, max_attempts, claim_limit)
                        .await
                },
            ),
            // Read only when agents (re)connect, so usually in a storm: one batch at a time
            // gathers the most agents per statement, as registrations do.
            unfinished: store_batcher(
                store,
                COMMAND_BATCH,
                1,
                stop.clone(),
                move |store, agents| async move {
                    store.unfinished_commands_of(&agents, claim_limit).await
                },
            ),
            reports: store_batcher(
                store,
                COMMAND_BATCH,
                COMMAND_BATCHES_IN_FLIGHT,
                stop,
                |store, reports| async move { store.finish_commands(&reports).await },
            ),
        }
    }

    /// Inserts a command that belongs to no session, as [`Store::create_command`].
    pub(crate) async fn create(
        &self,
        command: NewCommand,
    ) -> Result<streamspace_store::Result<Command>, BatchError> {
        self.inserts.call(command).await
    }

    /// Claims what is due for `agent_id`, as [`Store::claim_due_commands`].
    pub(crate) async fn claim_due(&self, agent_id: &str) -> Result<Vec<Command>, BatchError> {
        self.claims.call(agent_id.to_owned()).await
    }

    /// Every unfinished command of `agent_id` (at most the claim limit), as
    /// [`Store::unfinished_commands_of`] reads them for a (re)connected agent.
    pub(crate) async fn unfinished(&self, agent_id: &str) -> Result<Vec<Command>, BatchError> {
        self.unfinished.call(agent_id.to_owned()).await
    }

    /// Records an agent's report on a command, as [`Store::finish_command`].
    pub(crate) async fn finish(
        &self,
        report: CommandReport,
    ) -> Result<streamspace_store::Result<(Command, bool)>, BatchError> {
        self.reports.call(report).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test]
    async fn requests_queued_together_are_carried_together_and_answered_in_order()
    -> anyhow::Result<()> {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::start(
            64,
            1,
            CancellationToken::new(),
            move |requests: Vec<u32>| {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(requests.len());
                let mut gate = gate_rx.clone();
                async move {
                    // The first batch waits until the test lets it go, so that the others
                    // queue meanwhile.
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(requests.into_iter().map(|r| r * 10).collect())
                }
            },
        ));
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        // Wait until the first batch has been taken (it is held at the gate).
        while sizes.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=100)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(i).await })
            })
            .collect();
        // Every one of the 99 is queued before the gate opens.
        while batcher.tx.capacity() > batcher.tx.max_capacity() - 99 {
            tokio::task::yield_now().await;
        }
        gate_tx.send(true)?;
        assert_eq!(first.await?, Ok(10));
        for (i, task) in (2..=100).zip(rest) {
            assert_eq!(task.await?, Ok(i * 10));
        }
        let sizes = sizes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            sizes,
            [1, 64, 35],
            "one alone, then the queue in batches of at most 64"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_second_batch_is_carried_while_the_first_is_in_flight() -> anyhow::Result<()> {
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let taken = Arc::new(Mutex::new(Vec::new()));
        let seen = taken.clone();
        let batcher = Arc::new(Batcher::start(
            8,
            2,
            CancellationToken::new(),
            move |requests: Vec<u32>| {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(requests.iter().copied());
                let mut gate = gate_rx.clone();
                async move {
                    // Request 1 is held until the test lets it go; others pass at once.
                    if requests.contains(&1) {
                        let _ = gate.wait_for(|open| *open).await;
                    }
                    Ok(requests)
                }
            },
        ));
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        // Wait until the first batch has taken request 1.
        while taken.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(batcher.call(2).await, Ok(2), "the second slot carried it");
        assert!(!first.is_finished());
        gate_tx.send(true)?;
        assert_eq!(first.await?, Ok(1));
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_request_with_its_reason() -> anyhow::Result<()> {
        let batcher: Batcher<u32, u32> = Batcher::start(
            8,
            1,
            CancellationToken::new(),
            |_requests: Vec<u32>| async { Err("the database is down".to_owned()) },
        );
        assert_eq!(
            batcher.call(1).await,
            Err(BatchError::Failed("the database is down".into()))
        );
        let stop = CancellationToken::new();
        let stopped: Batcher<u32, u32> =
            Batcher::start(8, 1, stop.clone(), |r: Vec<u32>| async { Ok(r) });
        stop.cancel();
        assert_eq!(stopped.call(1).await, Err(BatchError::Stopped));
        Ok(())
    }
}
