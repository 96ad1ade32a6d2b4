//! The bytes of one transfer on the agent's data connection: an upload's body sent as `data`
//! frames, a download's frames turned into a response body, and the audit record written when
//! either ends — however it ends.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket};
use axum::http::StatusCode;
use futures_util::{Stream, StreamExt};
use serde_json::json;
use streamspace_proto::transfer::{
    DATA_CHUNK_BYTES, Frame, TransferDirection, TransferFailure, failure_code,
};
use uuid::Uuid;

use crate::auth::Actor;
use crate::config::TunnelConfig;
use crate::error::ApiError;
use crate::state::AppState;

/// How a transfer that did not succeed ended.
pub(crate) enum Outcome {
    /// Refused before any byte moved (the answer is ready).
    Refused(ApiError),
    /// The agent reported a failure, after this many bytes.
    Failed(TransferFailure, u64),
    /// The client sent more than the limit (counted here, before the agent saw it).
    TooLarge(u64),
    /// The client's body broke off.
    ClientGone(u64),
}

impl Outcome {
    /// The API answer and the bytes that had moved.
    pub fn into_error(self, max_bytes: u64) -> (ApiError, u64) {
        match self {
            Self::Refused(e) => (e, 0),
            Self::Failed(failure, bytes) => (super::failure_error(&failure, max_bytes), bytes),
            Self::TooLarge(bytes) => (super::too_large(max_bytes), bytes),
            Self::ClientGone(bytes) => (
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "upload_incomplete",
                    "the request body broke off before its end",
                ),
                bytes,
            ),
        }
    }
}

/// The next transfer frame from the agent, waiting at most `wait`.
pub(super) async fn next_frame(
    socket: &mut WebSocket,
    wait: Duration,
) -> Result<Frame, TransferFailure> {
    loop {
        let message = match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(lost(format!("the agent's connection failed: {e}"))),
            Ok(None) => return Err(lost("the agent's connection closed")),
            Err(_) => return Err(lost("the agent did not answer in time")),
        };
        match message {
            Message::Binary(bytes) => {
                return Frame::decode(&bytes).map_err(|e| lost(e.to_string()));
            }
            Message::Close(_) => return Err(lost("the agent ended the transfer")),
            Message::Text(_) => return Err(lost("the agent sent a text frame")),
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

fn lost(message: impl Into<String>) -> TransferFailure {
    TransferFailure::new(failure_code::FAILED, message)
}

async fn send(socket: &mut WebSocket, bytes: Vec<u8>, wait: Duration) -> bool {
    matches!(
        tokio::time::timeout(wait, socket.send(Message::Binary(bytes.into()))).await,
        Ok(Ok(()))
    )
}

/// Streams `body` to the agent as an upload of at most `max_bytes`; the bytes written.
pub(super) async fn upload(
    mut socket: WebSocket,
    body: Body,
    max_bytes: u64,
    tunnel: &TunnelConfig,
) -> Result<u64, Outcome> {
    match next_frame(&mut socket, tunnel.open_timeout).await {
        Ok(Frame::Ready) => {}
        Ok(Frame::Error(failure)) | Err(failure) => return Err(Outcome::Failed(failure, 0)),
        Ok(other) => return Err(Outcome::Refused(super::unexpected(&other))),
    }
    let mut sent = 0u64;
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            abandon(&mut socket, failure_code::FAILED, "the upload broke off").await;
            return Err(Outcome::ClientGone(sent));
        };
        sent += chunk.len() as u64;
        if sent > max_bytes {
            let why = format!("the file is larger than the limit of {max_bytes} bytes");
            abandon(&mut socket, failure_code::TOO_LARGE, &why).await;
            return Err(Outcome::TooLarge(sent));
        }
        for piece in chunk.chunks(DATA_CHUNK_BYTES) {
            if !send(&mut socket, Frame::encode_data(piece), tunnel.send_timeout).await {
                return Err(agent_verdict(&mut socket, sent).await);
            }
        }
    }
    if !send(&mut socket, Frame::End.encode(), tunnel.send_timeout).await {
        return Err(agent_verdict(&mut socket, sent).await);
    }
    // Writing the file out may take the agent a while (it syncs before renaming).
    match next_frame(
        &mut socket,
        tunnel.open_timeout.max(Duration::from_secs(60)),
    )
    .await
    {
        Ok(Frame::Done { bytes }) => {
            close(&mut socket).await;
            Ok(bytes)
        }
        Ok(Frame::Error(failure)) | Err(failure) => Err(Outcome::Failed(failure, sent)),
        Ok(other) => Err(Outcome::Refused(super::unexpected(&other))),
    }
}

/// Why the agent stopped taking an upload: the error it sent before closing, if any.
async fn agent_verdict(socket: &mut WebSocket, sent: u64) -> Outcome {
    match next_frame(socket, Duration::from_secs(5)).await {
        Ok(Frame::Error(failure)) | Err(failure) => Outcome::Failed(failure, sent),
        Ok(other) => Outcome::Refused(super::unexpected(&other)),
    }
}

/// Tells the agent to drop the upload and waits (briefly) until it has: when the answer
/// leaves, no part of the file is left in the folder.
async fn abandon(socket: &mut WebSocket, code: &str, why: &str) {
    let frame = Frame::Error(TransferFailure::new(code, why)).encode();
    if send(socket, frame, Duration::from_secs(5)).await {
        let _ = next_frame(socket, Duration::from_secs(5)).await;
    }
    close(socket).await;
}

async fn close(socket: &mut WebSocket) {
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
}

/// A download's body: the agent's `data` frames until `done`. A failure or a short stream
/// ends the body with an error, so the client sees a broken transfer rather than a short file.
pub(super) fn download(
    socket: WebSocket,
    size: u64,
    wait: Duration,
    record: Record,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let state = Some((socket, 0u64, record));
    futures_util::stream::unfold(state, move |state| async move {
        let (mut socket, received, record) = state?;
        // A slow client holds the agent back through the data connection's flow control; the
        // wait bounds an agent that stops sending.
        let wait = wait.max(Duration::from_secs(60));
        match next_frame(&mut socket, wait).await {
            Ok(Frame::Data(bytes)) if received + bytes.len() as u64 <= size => {
                let received = received + bytes.len() as u64;
                Some((Ok(Bytes::from(bytes)), Some((socket, received, record))))
            }
            Ok(Frame::Done { bytes }) if bytes == size && received == size => {
                record.finish("done", received).await;
                None
            }
            Ok(Frame::Error(failure)) | Err(failure) => {
                record.finish(&failure.code, received).await;
                Some((Err(std::io::Error::other(failure.message)), None))
            }
            Ok(_) => {
                record.finish(failure_code::FAILED, received).await;
                Some((
                    Err(std::io::Error::other("the agent's stream did not add up")),
                    None,
                ))
            }
        }
    })
}

/// The audit entry of one upload or download, written once when it ends (`aborted` if the
/// request went away first).
pub(crate) struct Record {
    app: Option<AppState>,
    actor: Actor,
    session_id: Uuid,
    direction: TransferDirection,
    path: String,
}

impl Record {
    pub fn new(
        app: &AppState,
        actor: &Actor,
        session_id: Uuid,
        direction: TransferDirection,
        path: &str,
    ) -> Self {
        Self {
            app: Some(app.clone()),
            actor: actor.clone(),
            session_id,
            direction,
            path: path.to_owned(),
        }
    }

    pub async fn finish(mut self, outcome: &str, bytes: u64) {
        if let Some(app) = self.app.take() {
            write(&app, &self, outcome, bytes).await;
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let Some(app) = self.app.take() else { return };
        let record = Self {
            app: None,
            actor: self.actor.clone(),
            session_id: self.session_id,
            direction: self.direction,
            path: std::mem::take(&mut self.path),
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { write(&app, &record, "aborted", 0).await });
        }
    }
}

async fn write(app: &AppState, record: &Record, outcome: &str, bytes: u64) {
    let action = match record.direction {
        TransferDirection::Upload => "session.file_upload",
        TransferDirection::Download => "session.file_download",
        TransferDirection::List => "session.file_list",
    };
    tracing::info!(session_id = %record.session_id, direction = %record.direction,
        path = %record.path, bytes, %outcome, "file transfer");
    let entry = crate::audit::entry(
        &record.actor,
        action,
        record.session_id.to_string(),
        json!({
            "direction": record.direction,
            "path": record.path,
            "bytes": bytes,
            "outcome": outcome,
        }),
    );
    crate::audit::record_event(app, &entry).await;
}
