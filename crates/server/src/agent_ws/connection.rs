//! One agent connection after the upgrade: a reader loop (this task) and a writer task.
//!
//! The writer owns the socket's sending half and is fed by a bounded channel; the hub and the
//! reader only ever queue messages. Whatever ends the connection — a bad message, a write
//! failure, a full queue, silence for three heartbeat intervals, a newer connection, shutdown —
//! goes through the connection's [`Closer`], which keeps the first close code and reason; the
//! writer then sends that close frame. Cleanup removes only this connection from the hub and
//! marks the agent offline only if this connection's epoch is still the current one.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use streamspace_proto::wire::{self, ServerMessage, close_code};
use streamspace_store::ApiKeyRecord;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tracing::Instrument;

use super::messages::{Conn, Refusal};
use crate::hub::Closer;
use crate::state::AppState;

/// Messages queued for one agent before it counts as not reading.
const OUTBOX: usize = 256;
/// Close reasons are limited to 123 bytes by the WebSocket protocol.
const MAX_REASON: usize = 120;
/// Close code for a broken WebSocket protocol.
const PROTOCOL_ERROR: u16 = close_code::PROTOCOL_ERROR;

pub(super) async fn run(
    app: AppState,
    socket: WebSocket,
    key: ApiKeyRecord,
    _slot: OwnedSemaphorePermit,
) {
    let bound = key.agent_id.clone().unwrap_or_default();
    let span = tracing::info_span!(
        "agent_conn",
        agent_id = %bound,
        replica_id = %app.config.replica_id,
        epoch = tracing::field::Empty,
    );
    async move {
        let (sink, mut stream) = socket.split();
        let closer = Arc::new(Closer::default());
        let (tx, rx) = mpsc::channel(OUTBOX);
        let send_timeout = app.config.heartbeat_interval;
        let writer =
            tokio::spawn(write_loop(sink, rx, closer.clone(), send_timeout).in_current_span());
        let mut conn = Conn::new(app, key, tx, closer.clone());
        read_loop(&mut conn, &mut stream).await;
        closer.close(close_code::NORMAL, "connection closed");
        if tokio::time::timeout(send_timeout * 2, writer)
            .await
            .is_err()
        {
            tracing::debug!("writer did not finish in time");
        }
        if let Some((code, reason)) = closer.reason() {
            tracing::info!(code, reason, "agent connection closed");
        }
        conn.cleanup().await;
    }
    .instrument(span)
    .await
}

async fn read_loop(conn: &mut Conn, stream: &mut SplitStream<WebSocket>) {
    let liveness = conn.app.config.liveness_timeout();
    let mut deadline = Instant::now() + liveness;
    loop {
        let acks_due = conn.acks_due();
        let frame = tokio::select! {
            _ = conn.closer.closed() => return,
            _ = conn.app.shutdown.cancelled() => {
                conn.going_away();
                return;
            }
            _ = sleep_until_some(acks_due) => {
                conn.flush_acks().await;
                continue;
            }
            frame = tokio::time::timeout_at(deadline, stream.next()) => frame,
        };
        let message = match frame {
            Err(_) if conn.is_registered() => {
                return conn.refuse(Refusal::new(
                    close_code::LIVENESS,
                    "no message for 3 heartbeat intervals",
                ));
            }
            Err(_) => {
                return conn.refuse(Refusal::policy(
                    "no register message within 3 heartbeat intervals",
                ));
            }
            Ok(None) => return,
            Ok(Some(Err(e))) => return read_failed(conn, e),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                deadline = Instant::now() + liveness;
                let handled = match wire::decode_agent_message(text.as_str()) {
                    Ok(msg) => conn.handle(msg).await,
                    Err(e) => Err(Refusal::new(e.close_code(), e.to_string())),
                };
                if let Err(refusal) = handled {
                    return conn.refuse(refusal);
                }
            }
            Message::Binary(_) => {
                return conn.refuse(Refusal::new(
                    close_code::UNSUPPORTED,
                    "binary frames are not accepted on the control connection",
                ));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return,
        }
    }
}

/// Sleeps until `at`, or forever if there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn read_failed(conn: &Conn, err: axum::Error) {
    match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) => match *e {
            tungstenite::Error::Capacity(capacity) => conn.refuse(Refusal::new(
                close_code::TOO_BIG,
                format!("{capacity} (limit {} bytes)", wire::MAX_MESSAGE_BYTES),
            )),
            tungstenite::Error::Protocol(protocol) => {
                conn.refuse(Refusal::new(PROTOCOL_ERROR, protocol.to_string()))
            }
            tungstenite::Error::Utf8(_) => conn.refuse(Refusal::new(
                close_code::INVALID_MESSAGE,
                "text frame is not valid UTF-8",
            )),
            other => tracing::debug!(error = %other, "reading from the agent failed"),
        },
        Err(other) => tracing::debug!(error = %other, "reading from the agent failed"),
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<ServerMessage>,
    closer: Arc<Closer>,
    send_timeout: Duration,
) {
    loop {
        let msg = tokio::select! {
            biased;
            _ = closer.closed() => break,
            msg = rx.recv() => match msg {
                Some(msg) => msg,
                None => break,
            },
        };
        if !send(&mut sink, text(&msg), send_timeout).await {
            closer.close(close_code::INTERNAL, "writing to the agent failed");
            return;
        }
    }
    let (code, reason) = closer
        .reason()
        .unwrap_or((close_code::NORMAL, String::new()));
    if code == close_code::GOING_AWAY {
        // Deliver the `shutdown` notice queued before the close.
        while let Ok(msg) = rx.try_recv() {
            if !send(&mut sink, text(&msg), send_timeout).await {
                return;
            }
        }
    }
    let frame = CloseFrame {
        code,
        reason: truncate(&reason).into(),
    };
    send(&mut sink, Message::Close(Some(frame)), send_timeout).await;
}

fn text(msg: &ServerMessage) -> Message {
    Message::Text(wire::encode(msg).into())
}

async fn send(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Message,
    send_timeout: Duration,
) -> bool {
    match tokio::time::timeout(send_timeout, sink.send(message)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "writing to the agent failed");
            false
        }
        Err(_) => {
            tracing::debug!("writing to the agent timed out");
            false
        }
    }
}

fn truncate(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_the_protocol_limit() {
        let long = "é".repeat(200);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_REASON);
        assert!(long.starts_with(&cut));
        assert_eq!(truncate("short"), "short");
    }
}
