//! One connection to one control-plane replica, from handshake to teardown.
//!
//! A connection is `register` → `welcome`, then three loops polled together in one task:
//! the **reader** decodes server messages and hands commands to the executor (never running
//! them itself), the **writer** drains the agent's bounded outbox into the socket — one message
//! per text frame — and the **heartbeat** ticks at the interval the server asked for, checking
//! for dead sessions on the way. The first of them to end ends the connection and drops the
//! other two, so a write error tears down the reader too and the supervisor reconnects: there
//! is never a half-alive connection that reads commands it cannot answer.
//!
//! A write that makes no progress is a failed write too: a server that stops reading fills the
//! TCP buffers and would otherwise block the writer forever while the reader looks healthy. Each
//! write gets [`AgentConfig::write_timeout`] (by default the heartbeat interval from `welcome`),
//! the same bound the server puts on its own writes.
//!
//! Everything after `welcome` is generic over the two halves of the socket (`FrameSink`,
//! `FrameStream`), so tests drive the loops with scripted halves and paused time.
//!
//! Results are sent at least once: the agent asks for receipts in `register`; on a connection
//! whose `welcome` grants them, the heartbeat loop first sends every result still unconfirmed
//! from before this connection (lost with an earlier one, or not recorded by the server), then
//! on each tick those that got no `result_recorded` within a whole interval (see
//! [`crate::executor`]). Results the agent could not even decode the command of are kept too.
//!
//! A `ping` from the server is answered with a heartbeat (the heartbeat is the liveness signal
//! the server measures; answering a ping with one lets a server probe an agent on demand).
//!
//! A message the agent cannot decode (malformed, or a type or action this build does not know)
//! concerns one command at most, so it never ends the connection and with it every other
//! session's traffic: a command whose id can be read is answered `failed` with the decoding
//! error, anything else is logged and skipped. A message over the size limit or of another
//! protocol version still ends the connection, as the protocol says.

use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use streamspace_proto::wire::{
    self, AgentMessage, Capacity, MAX_MESSAGE_BYTES, ProtoError, Register, ServerMessage,
    close_code,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

use crate::command_log::Outcome;
use crate::executor::Executor;
use crate::{AgentConfig, Chain};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The writing half of a connection: the socket's in production, a scripted one in tests.
trait FrameSink: Sink<Message, Error = WsError> + Unpin {}
impl<T: Sink<Message, Error = WsError> + Unpin> FrameSink for T {}

/// The reading half of a connection.
trait FrameStream: Stream<Item = Result<Message, WsError>> + Unpin {}
impl<T: Stream<Item = Result<Message, WsError>> + Unpin> FrameStream for T {}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The agent is shutting down.
    Cancelled,
    /// The server asked the agent to go elsewhere.
    ServerShutdown(String),
    /// The server refused the registration.
    Rejected(String),
    /// The server sent something that is not a valid message.
    BadMessage(ProtoError),
    /// Could not connect, or the connection broke.
    Lost(String),
}

/// What the supervisor learns from one connection.
#[derive(Debug)]
pub struct Report {
    pub ended: Ended,
    /// How long the connection was registered (zero if it never was).
    pub registered_for: Duration,
}

/// What every connection shares.
pub struct Context<'a> {
    pub config: &'a AgentConfig,
    pub executor: &'a Executor,
    pub outbox: &'a mpsc::Sender<AgentMessage>,
    /// Viewer streams (see [`crate::tunnel`]).
    pub tunnels: &'a std::sync::Arc<crate::tunnel::Tunnels>,
    /// TLS for `wss://` servers (see `streamspace_client::tls`); `None`: the system's roots.
    pub tls: Option<&'a std::sync::Arc<rustls::ClientConfig>>,
}

/// Connects to `url`, registers, and serves until the connection ends.
pub async fn serve(
    ctx: &Context<'_>,
    url: &Url,
    outbox: &mut mpsc::Receiver<AgentMessage>,
    shutdown: &CancellationToken,
) -> Report {
    let lost = |ended| Report {
        ended,
        registered_for: Duration::ZERO,
    };
    let socket = tokio::select! {
        () = shutdown.cancelled() => return lost(Ended::Cancelled),
        r = connect(ctx.config, ctx.tls, url) => match r {
            Ok(socket) => socket,
            Err(e) => return lost(Ended::Lost(Chain(&e).to_string())),
        },
    };
    ctx.tunnels.set_server(url);
    let (mut sink, mut stream) = socket.split();
    let welcomed = tokio::select! {
        () = shutdown.cancelled() => Err(Ended::Cancelled),
        r = register(ctx, &mut sink, &mut stream) => r,
    };
    let heartbeat = match welcomed {
        Ok(heartbeat) => heartbeat,
        Err(ended) => {
            close(&mut sink, &ended).await;
            return lost(ended);
        }
    };
    tracing::info!(server = %url, ?heartbeat, "connected and registered");
    let since = Instant::now();
    let ended = serve_registered(ctx, &mut sink, &mut stream, outbox, shutdown, heartbeat).await;
    Report {
        ended,
        registered_for: since.elapsed(),
    }
}

/// Runs the reader, the writer and the heartbeat of a registered connection until the first of
/// them ends (or `shutdown`), then says goodbye. Returning drops all three.
async fn serve_registered(
    ctx: &Context<'_>,
    sink: &mut impl FrameSink,
    stream: &mut impl FrameStream,
    outbox: &mut mpsc::Receiver<AgentMessage>,
    shutdown: &CancellationToken,
    heartbeat: Duration,
) -> Ended {
    let write_timeout = ctx.config.write_timeout.unwrap_or(heartbeat);
    let connected = Instant::now();
    let ended = tokio::select! {
        () = shutdown.cancelled() => Ended::Cancelled,
        e = write_loop(sink, outbox, write_timeout) => e,
        e = read_loop(ctx, stream) => e,
        e = heartbeat_loop(ctx, heartbeat, connected) => e,
    };
    close(sink, &ended).await;
    ended
}

/// Why no connection to a server was made.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("bad server URL {url}")]
    Url {
        url: Url,
        #[source]
        source: WsError,
    },
    #[error("the agent key contains characters not allowed in a header")]
    BadKey,
    #[error("{url} refused the connection: HTTP {status}")]
    Refused { url: Url, status: http::StatusCode },
    #[error("connecting to {url}")]
    Failed {
        url: Url,
        #[source]
        source: WsError,
    },
    #[error("connecting to {url}: no answer within {timeout:?}")]
    Timeout { url: Url, timeout: Duration },
}

async fn connect(
    config: &AgentConfig,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    url: &Url,
) -> Result<Socket, ConnectError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|source| ConnectError::Url {
            url: url.clone(),
            source,
        })?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.key))
        .map_err(|_| ConnectError::BadKey)?;
    auth.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, auth);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_MESSAGE_BYTES);
    let connector = tls.map(|tls| tokio_tungstenite::Connector::Rustls(tls.clone()));
    let handshake =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_config), true, connector);
    match tokio::time::timeout(config.connect_timeout, handshake).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(WsError::Http(response))) => Err(ConnectError::Refused {
            url: url.clone(),
            status: response.status(),
        }),
        Ok(Err(source)) => Err(ConnectError::Failed {
            url: url.clone(),
            source,
        }),
        Err(_) => Err(ConnectError::Timeout {
            url: url.clone(),
            timeout: config.connect_timeout,
        }),
    }
}

/// Sends `register` and waits for an accepting `welcome`; the heartbeat interval it sets.
async fn register(
    ctx: &Context<'_>,
    sink: &mut impl FrameSink,
    stream: &mut impl FrameStream,
) -> Result<Duration, Ended> {
    let config = ctx.config;
    let sessions = ctx.executor.registration_sessions().await;
    let message = AgentMessage::Register(Register {
        agent_id: config.agent_id.clone(),
        platform: ctx.executor.runtime().platform().to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        capacity: Capacity {
            max_sessions: config.max_sessions,
        },
        labels: config.labels.clone(),
        sessions: sessions.clone(),
        result_receipts: true,
        user_homes: ctx.executor.runtime().user_homes(),
        file_transfer: true,
    });
    write(sink, &message, config.welcome_timeout).await?;
    let welcome = tokio::time::timeout(config.welcome_timeout, async {
        loop {
            let message = match next_message(stream).await? {
                Incoming::Message(message) => message,
                Incoming::Unreadable { error, command_id } => {
                    tracing::warn!(?command_id, %error, "skipping an unreadable message before welcome");
                    continue;
                }
            };
            match message {
                ServerMessage::Ping
                | ServerMessage::TunnelOpen(_)
                | ServerMessage::TransferOpen(_)
                | ServerMessage::TunnelClose { .. } => continue,
                ServerMessage::ResultRecorded { command_id } => {
                    ctx.executor.confirm_result(command_id);
                    continue;
                }
                ServerMessage::Shutdown { reason } => return Err(Ended::ServerShutdown(reason)),
                ServerMessage::Welcome {
                    accepted,
                    heartbeat_interval_secs,
                    replica_id,
                    epoch,
                    reason,
                    result_receipts,
                } => {
                    return Ok((
                        accepted,
                        heartbeat_interval_secs,
                        replica_id,
                        epoch,
                        reason,
                        result_receipts,
                    ));
                }
                ServerMessage::Command(c) => {
                    return Err(Ended::Lost(format!(
                        "server sent command {} before welcome",
                        c.command_id
                    )));
                }
            }
        }
    })
    .await
    .map_err(|_| {
        Ended::Lost(format!(
            "no welcome within {:?} of registering",
            config.welcome_timeout
        ))
    })??;
    let (accepted, interval, replica_id, epoch, reason, receipts) = welcome;
    if !accepted {
        return Err(Ended::Rejected(
            reason.unwrap_or_else(|| "no reason given".to_owned()),
        ));
    }
    ctx.executor.confirm_failures(&sessions);
    ctx.executor.use_receipts(receipts);
    tracing::debug!(%replica_id, epoch, receipts, "welcomed");
    Ok(Duration::from_secs(interval.max(1)))
}

/// A text frame from the server, decoded or not.
#[derive(Debug)]
enum Incoming {
    Message(ServerMessage),
    /// Malformed, or of a type or action this build does not know; with the command's id when
    /// it claims to be a command that names one.
    Unreadable {
        error: ProtoError,
        command_id: Option<Uuid>,
    },
}

/// The next control message, skipping WebSocket pings and pongs. Only a message too big or of
/// another protocol version ends the connection; other undecodable ones are [`Incoming::Unreadable`].
async fn next_message(stream: &mut impl FrameStream) -> Result<Incoming, Ended> {
    loop {
        let frame = match stream.next().await {
            None => return Err(Ended::Lost("the server closed the connection".to_owned())),
            Some(Err(e)) => return Err(Ended::Lost(format!("reading from the server: {e}"))),
            Some(Ok(frame)) => frame,
        };
        match frame {
            Message::Text(text) => {
                return match wire::decode_server_message(text.as_str()) {
                    Ok(message) => Ok(Incoming::Message(message)),
                    Err(
                        error @ (ProtoError::TooBig { .. } | ProtoError::UnsupportedVersion { .. }),
                    ) => Err(Ended::BadMessage(error)),
                    Err(error) => Ok(Incoming::Unreadable {
                        command_id: wire::command_id_of(text.as_str()),
                        error,
                    }),
                };
            }
            Message::Binary(_) => {
                return Err(Ended::BadMessage(ProtoError::UnknownType(
                    "binary frame".to_owned(),
                )));
            }
            Message::Close(frame) => {
                let why = frame.map_or_else(String::new, |f| format!(" ({} {})", f.code, f.reason));
                return Err(Ended::Lost(format!(
                    "the server closed the connection{why}"
                )));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Sends one message; a write that fails or does not finish within `timeout` loses the connection.
async fn write(
    sink: &mut impl FrameSink,
    message: &AgentMessage,
    timeout: Duration,
) -> Result<(), Ended> {
    let text = wire::encode(message);
    if text.len() > MAX_MESSAGE_BYTES {
        // Our own messages are small by construction; refuse rather than be disconnected.
        tracing::error!(
            size = text.len(),
            "dropping an outgoing message over the size limit"
        );
        return Ok(());
    }
    match tokio::time::timeout(timeout, sink.send(Message::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Ended::Lost(format!("writing to the server: {e}"))),
        Err(_) => Err(Ended::Lost(format!(
            "writing to the server: a write did not finish within {timeout:?} \
             (the server is not reading, or the network is stalled)"
        ))),
    }
}

async fn write_loop(
    sink: &mut impl FrameSink,
    outbox: &mut mpsc::Receiver<AgentMessage>,
    timeout: Duration,
) -> Ended {
    loop {
        let Some(message) = outbox.recv().await else {
            return Ended::Cancelled;
        };
        if let Err(ended) = write(sink, &message, timeout).await {
            return ended;
        }
    }
}

async fn read_loop(ctx: &Context<'_>, stream: &mut impl FrameStream) -> Ended {
    loop {
        let message = match next_message(stream).await {
            Err(ended) => return ended,
            Ok(Incoming::Message(message)) => message,
            Ok(Incoming::Unreadable { error, command_id }) => {
                fail_unreadable(ctx, error, command_id).await;
                continue;
            }
        };
        match message {
            ServerMessage::Command(command) => ctx.executor.submit(command).await,
            ServerMessage::Ping => send_heartbeat(ctx).await,
            ServerMessage::Shutdown { reason } => return Ended::ServerShutdown(reason),
            ServerMessage::TunnelOpen(open) => ctx.tunnels.open(open),
            ServerMessage::TransferOpen(open) => ctx.tunnels.transfer(open),
            ServerMessage::TunnelClose { tunnel_id, .. } => ctx.tunnels.close(tunnel_id),
            ServerMessage::ResultRecorded { command_id } => {
                ctx.executor.confirm_result(command_id);
            }
            ServerMessage::Welcome { .. } => {
                tracing::debug!("ignoring a second welcome");
            }
        }
    }
}

/// Answers a command the agent could not decode with `failed`, or logs a message that names no
/// command; the connection stays up either way.
async fn fail_unreadable(ctx: &Context<'_>, error: ProtoError, command_id: Option<Uuid>) {
    let Some(command_id) = command_id else {
        tracing::warn!(%error, "skipping a message from the server that could not be read");
        return;
    };
    tracing::warn!(%command_id, %error, "failing a command that could not be read");
    // Kept until confirmed like any result, but not logged: a redelivery is read (and failed)
    // again.
    let failed = Outcome::Failed {
        error: format!("the agent could not read this command: {error}"),
    };
    ctx.executor.send_result(command_id, failed).await;
}

/// Heartbeats every `period` from `connected` on, after resending what earlier connections
/// left unconfirmed and, on each tick, what this one did not get confirmed within `period`.
async fn heartbeat_loop(ctx: &Context<'_>, period: Duration, connected: Instant) -> Ended {
    let mut ticks = tokio::time::interval_at(connected + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let earlier = ctx.executor.results_sent_before(connected, Instant::now());
    if resend_results(ctx, earlier).await.is_err() {
        return Ended::Cancelled;
    }
    loop {
        ticks.tick().await;
        let unanswered = ctx.executor.results_unanswered_for(Instant::now(), period);
        if resend_results(ctx, unanswered).await.is_err() {
            return Ended::Cancelled;
        }
        for status in ctx.executor.collect_failures().await {
            if ctx
                .outbox
                .send(AgentMessage::SessionStatus(status))
                .await
                .is_err()
            {
                return Ended::Cancelled;
            }
        }
        send_heartbeat(ctx).await;
    }
}

/// Sends results again; an error when the outbox is closed (the agent is stopping).
async fn resend_results(ctx: &Context<'_>, due: Vec<AgentMessage>) -> Result<(), ()> {
    if !due.is_empty() {
        tracing::info!(
            results = due.len(),
            "sending results the control plane has not confirmed again"
        );
    }
    for message in due {
        ctx.outbox.send(message).await.map_err(|_| ())?;
    }
    Ok(())
}

async fn send_heartbeat(ctx: &Context<'_>) {
    let heartbeat = AgentMessage::Heartbeat {
        active_sessions: ctx.executor.active_sessions().await,
        capacity: Capacity {
            max_sessions: ctx.config.max_sessions,
        },
    };
    let _ = ctx.outbox.send(heartbeat).await;
}

/// Says goodbye with a close code that explains why, without waiting long for a dead peer.
async fn close(sink: &mut impl FrameSink, ended: &Ended) {
    let (code, reason) = match ended {
        Ended::BadMessage(e) => (e.close_code(), e.to_string()),
        Ended::Cancelled => (close_code::GOING_AWAY, "agent shutting down".to_owned()),
        Ended::ServerShutdown(_) | Ended::Rejected(_) => (close_code::NORMAL, String::new()),
        Ended::Lost(_) => return,
    };
    // A close reason must fit in a control frame (123 bytes).
    let mut cut = reason.len().min(120);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason[..cut];
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

#[cfg(test)]
mod tests;
