//! Copies one viewer's stream between the browser's WebSocket and the agent's data connection
//! (a raw stream, or binary WebSocket frames when the agent fell back to one).
//!
//! Each direction reads one frame, sends it on, and only then reads the next, so what is held
//! in memory is one frame per direction plus each socket's bounded write buffer. A send that
//! does not finish within the send timeout ends the stream: towards the viewer that is a viewer
//! not reading (closed with 1013); towards the agent, a stalled agent (closed with 1011). The
//! data connection is closed first, so the agent releases its side at once, and the viewer is
//! then given `close_grace` to take its close frame.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use streamspace_client::raw_stream::{RawStream, write_flushed};
use streamspace_proto::tunnel::{STREAM_READ_BUFFER_BYTES, close_code, next_read_size_from};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use super::rfb_filter::ClientFilter;
use super::rfb_server::{self, Piece, ServerFilter};
use crate::hub::Closer;
use crate::recording::Tap;
use crate::streams::DataConn;

/// How a stream ended, and what the viewer is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ending {
    pub code: u16,
    pub reason: String,
}

impl Ending {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// The filters of one viewer's stream (see `rfb_filter` and `rfb_server`); with neither, its
/// bytes are copied as they are.
#[derive(Debug, Default)]
pub(super) struct Filters {
    /// On what the viewer sends.
    pub client: Option<ClientFilter>,
    /// On what the session sends.
    pub server: Option<ServerFilter>,
}

/// Timing of one splice.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub send_timeout: Duration,
    pub close_grace: Duration,
}

/// Runs the stream until either side ends or `closer` is closed; returns how it ended. Each
/// direction passes its filter first, if it has one; with a `tap`, every chunk going to the
/// viewer is handed to the recording first (after the filter: a recording holds what the viewer
/// was sent).
pub(super) async fn run(
    viewer: WebSocket,
    data: DataConn,
    closer: &Closer,
    timing: Timing,
    filters: Filters,
    tap: Option<&mut Tap>,
) -> Ending {
    let (mut viewer_tx, mut viewer_rx) = viewer.split();
    let (mut data_tx, mut data_rx) = split(data);
    let ending = tokio::select! {
        () = closer.closed() => {
            let (code, reason) = closer.reason().unwrap_or((close_code::NORMAL, String::new()));
            Ending::new(code, reason)
        }
        e = down(&mut data_rx, &mut viewer_tx, timing.send_timeout, filters.server, tap) => e,
        e = up(&mut viewer_rx, &mut data_tx, timing.send_timeout, filters.client) => e,
    };
    let data_code = if ending.code == close_code::SLOW_VIEWER {
        close_code::NORMAL
    } else {
        ending.code
    };
    data_tx
        .close(data_code, &ending.reason, timing.send_timeout)
        .await;
    drop((data_tx, data_rx));
    close(
        &mut viewer_tx,
        ending.code,
        &ending.reason,
        timing.close_grace,
    )
    .await;
    ending
}

/// Agent → viewer, through `filter` if there is one.
async fn down(
    from: &mut DataRx,
    to: &mut SplitSink<WebSocket, Message>,
    send_timeout: Duration,
    mut filter: Option<ServerFilter>,
    mut tap: Option<&mut Tap>,
) -> Ending {
    let mut pieces: Vec<Piece> = Vec::new();
    let relayed = crate::metrics::tunnel_bytes("to_viewer");
    loop {
        let bytes = match from.next().await {
            Ok(bytes) => bytes,
            Err(ending) => return ending,
        };
        // What passes is usually the frame itself: it is sent on as it is, without a copy.
        let bytes = match filter.as_mut() {
            None => bytes,
            Some(filter) => {
                pieces.clear();
                if let Err(e) = filter.feed(&bytes, &mut pieces) {
                    return Ending::new(close_code::TUNNEL_FAILED, e.to_string());
                }
                if rfb_server::is_whole(&pieces, bytes.len()) {
                    bytes
                } else if pieces.is_empty() {
                    continue;
                } else {
                    rfb_server::assemble(&bytes, &pieces).into()
                }
            }
        };
        if let Some(tap) = tap.as_deref_mut()
            && let Err(e) = tap.record(&bytes).await
        {
            return Ending::new(close_code::TUNNEL_FAILED, e.to_string());
        }
        relayed.increment(bytes.len() as u64);
        match tokio::time::timeout(send_timeout, to.send(Message::Binary(bytes))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ending::new(close_code::NORMAL, "viewer gone"),
            Err(_) => {
                return Ending::new(
                    close_code::SLOW_VIEWER,
                    "the viewer did not read its stream in time",
                );
            }
        }
    }
}

/// Viewer → agent, through `filter` if there is one.
async fn up(
    from: &mut SplitStream<WebSocket>,
    to: &mut DataTx,
    send_timeout: Duration,
    mut filter: Option<ClientFilter>,
) -> Ending {
    let relayed = crate::metrics::tunnel_bytes("to_session");
    loop {
        let bytes = match from.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                return Ending::new(
                    close_code::UNSUPPORTED,
                    "this stream carries binary frames only",
                );
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                return Ending::new(close_code::NORMAL, "viewer left");
            }
        };
        let bytes = match filter.as_mut() {
            None => bytes,
            Some(filter) => {
                let mut passed = Vec::with_capacity(bytes.len());
                if let Err(e) = filter.feed(&bytes, &mut passed) {
                    return Ending::new(close_code::POLICY, e.to_string());
                }
                if passed.is_empty() {
                    continue;
                }
                passed.into()
            }
        };
        relayed.increment(bytes.len() as u64);
        match tokio::time::timeout(send_timeout, to.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(())) => {
                return Ending::new(close_code::TUNNEL_FAILED, "the agent's connection was lost");
            }
            Err(_) => {
                return Ending::new(close_code::TUNNEL_FAILED, "the agent did not read in time");
            }
        }
    }
}

async fn close(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: &str, wait: Duration) {
    let frame = CloseFrame {
        code,
        reason: truncate(reason).into(),
    };
    let _ = tokio::time::timeout(wait, sink.send(Message::Close(Some(frame)))).await;
}

/// The agent's half of a stream, reading.
enum DataRx {
    WebSocket(SplitStream<WebSocket>),
    Raw(RawReader<ReadHalf<RawStream>>),
}

/// The agent's half of a stream, writing.
enum DataTx {
    WebSocket(SplitSink<WebSocket, Message>),
    Raw(WriteHalf<RawStream>),
}

fn split(data: DataConn) -> (DataTx, DataRx) {
    match data {
        DataConn::WebSocket(socket) => {
            let (tx, rx) = (*socket).split();
            (DataTx::WebSocket(tx), DataRx::WebSocket(rx))
        }
        DataConn::Raw(stream) => {
            let (rx, tx) = tokio::io::split(stream);
            (DataTx::Raw(tx), DataRx::Raw(RawReader::new(rx)))
        }
    }
}

impl DataRx {
    /// The next bytes from the agent, or how the stream ended.
    async fn next(&mut self) -> Result<Bytes, Ending> {
        match self {
            Self::WebSocket(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Binary(bytes))) => return Ok(bytes),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        let reason = non_empty(reason, "stream ended");
                        return Err(Ending::new(close_code::NORMAL, reason));
                    }
                    Some(Ok(Message::Text(_))) => {
                        let text = "the agent sent a text frame";
                        return Err(Ending::new(close_code::TUNNEL_FAILED, text));
                    }
                    Some(Err(_)) | None => return Err(lost()),
                }
            },
            Self::Raw(reader) => match reader.next().await {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(Ending::new(
                    close_code::NORMAL,
                    "the agent ended the stream",
                )),
                Err(_) => Err(lost()),
            },
        }
    }
}

/// Reads a raw data connection a chunk at a time, each into a fresh buffer handed on without a
/// copy. The buffer waits, held, for a quiet stream's next bytes, so it starts at (and shrinks
/// back to) the size of a WebSocket's read buffer, and grows while reads fill it.
pub(super) struct RawReader<R> {
    stream: R,
    /// The next read's size (see `next_read_size_from`).
    size: usize,
}

impl<R: AsyncRead + Unpin> RawReader<R> {
    pub(super) fn new(stream: R) -> Self {
        Self {
            stream,
            size: STREAM_READ_BUFFER_BYTES,
        }
    }

    /// The next bytes, or `None` at the end of the stream.
    pub(super) async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        let mut buf = BytesMut::with_capacity(self.size);
        let n = self.stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        self.size = next_read_size_from(STREAM_READ_BUFFER_BYTES, self.size, n);
        Ok(Some(buf.freeze()))
    }
}

impl DataTx {
    async fn send(&mut self, bytes: Bytes) -> Result<(), ()> {
        match self {
            Self::WebSocket(socket) => socket.send(Message::Binary(bytes)).await.map_err(|_| ()),
            Self::Raw(stream) => write_flushed(stream, &bytes).await.map_err(|_| ()),
        }
    }

    /// Ends the agent's side: a close frame with `code` and `reason` on a WebSocket, the end of
    /// the stream on a raw one (the agent then drops its VNC connection either way).
    async fn close(&mut self, code: u16, reason: &str, wait: Duration) {
        match self {
            Self::WebSocket(socket) => close(socket, code, reason, wait).await,
            Self::Raw(stream) => {
                let _ = tokio::time::timeout(wait, stream.shutdown()).await;
            }
        }
    }
}

fn lost() -> Ending {
    Ending::new(close_code::TUNNEL_FAILED, "the agent's connection was lost")
}

fn non_empty(s: String, default: &str) -> String {
    if s.is_empty() { default.to_owned() } else { s }
}

/// Close reasons must fit a control frame (123 bytes).
pub(super) fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
