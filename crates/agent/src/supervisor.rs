//! Keeps the agent connected: one connection at a time, rotating through the configured
//! servers, with exponential backoff and full jitter between failed attempts.
//!
//! The first connection goes to the first server URL. Every ended connection moves on to one of
//! the other servers, chosen at random so a failed replica's agents spread over the survivors
//! (with one server, that is the same one again). A `shutdown` from a replica means "go
//! elsewhere now", so the next server is tried at once; any other end waits first. A connection that stayed registered for
//! `stable_after` forgets earlier failures, so one blip after hours of uptime does not wait 30 s.

use rand::SeedableRng;
use rand::rngs::StdRng;
use streamspace_proto::wire::AgentMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::backoff::Backoff;
use crate::connection::{self, Context, Ended};

pub async fn keep_connected(
    ctx: &Context<'_>,
    urls: &[Url],
    mut outbox: mpsc::Receiver<AgentMessage>,
    shutdown: &CancellationToken,
) {
    let config = ctx.config;
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    let mut rng = StdRng::from_os_rng();
    let mut previous_was_shutdown = false;
    let mut next = 0;
    loop {
        let Some(url) = urls.get(next) else { return };
        next = crate::backoff::next_server(next, urls.len(), &mut rng);
        tracing::debug!(server = %url, "connecting");
        let report = connection::serve(ctx, url, &mut outbox, shutdown).await;
        if report.registered_for >= config.stable_after {
            backoff.reset();
        }
        match report.ended {
            Ended::Cancelled => return,
            Ended::ServerShutdown(reason) if !previous_was_shutdown => {
                tracing::info!(server = %url, %reason, "server is shutting down; moving to the next server");
                previous_was_shutdown = true;
                continue;
            }
            Ended::ServerShutdown(reason) => {
                tracing::info!(server = %url, %reason, "server is shutting down");
            }
            Ended::Rejected(reason) => {
                tracing::error!(server = %url, %reason, "the control plane refused this agent's registration");
            }
            Ended::BadMessage(e) => {
                tracing::warn!(server = %url, error = %e, "the server sent an invalid message; reconnecting");
            }
            Ended::Lost(reason) => {
                tracing::warn!(server = %url, %reason, "connection lost");
            }
        }
        previous_was_shutdown = false;
        let delay = backoff.next_delay(&mut rng);
        tracing::debug!(?delay, "waiting before reconnecting");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}
