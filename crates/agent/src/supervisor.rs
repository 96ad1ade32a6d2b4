//! Keeps the agent connected: one connection at a time, rotating through the configured
//! servers, with exponential backoff and full jitter between failed attempts. Where and when the
//! next attempt goes is [`Reconnects`]'s rule (shared with the benchmark's simulated agents);
//! this loop runs the connections and says why each one ended.

use streamspace_proto::wire::AgentMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::backoff::Reconnects;
use crate::connection::{self, Context, Ended};

pub async fn keep_connected(
    ctx: &Context<'_>,
    urls: &[Url],
    mut outbox: mpsc::Receiver<AgentMessage>,
    shutdown: &CancellationToken,
) {
    let mut reconnects = Reconnects::new(urls.len(), ctx.config);
    loop {
        let Some(url) = urls.get(reconnects.server()) else {
            return;
        };
        tracing::debug!(server = %url, "connecting");
        let report = connection::serve(ctx, url, &mut outbox, shutdown).await;
        if matches!(report.ended, Ended::Cancelled) {
            return;
        }
        let server_shutdown = matches!(report.ended, Ended::ServerShutdown(_));
        let wait = reconnects.after(report.registered_for, server_shutdown);
        match (report.ended, wait) {
            (Ended::ServerShutdown(reason), None) => {
                tracing::info!(server = %url, %reason, "server is shutting down; moving to the next server");
            }
            (ended, _) => log_end(url, ended),
        }
        let Some(delay) = wait else { continue };
        tracing::debug!(?delay, "waiting before reconnecting");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

fn log_end(url: &Url, ended: Ended) {
    match ended {
        Ended::Cancelled => {}
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
}
