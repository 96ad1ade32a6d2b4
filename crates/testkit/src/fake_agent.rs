//! A scripted fake agent: speaks the control protocol over a real WebSocket, one step at a time,
//! so tests can play every part of an agent — including the bad ones.
//!
//! [`open`] and [`handshake`] are the agent's side of connecting (the bearer key, then
//! `register` → `welcome`); the benchmark's simulated agents use them too. A [`FakeAgent`]
//! counts every command it receives by id, so a test can assert that a command arrived exactly
//! once, or was sent again as often as the server's resend rule says ([`FakeAgent::deliveries`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use streamspace_proto::api::{Action, SessionState};
use streamspace_proto::wire::{
    self, AgentMessage, Capacity, CommandMessage, Register, ServerMessage, SessionStatus,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// An agent's control connection.
pub type AgentSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a fake agent waits for any one message.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

pub struct FakeAgent {
    pub agent_id: String,
    pub epoch: i64,
    ws: AgentSocket,
    /// Commands this agent has already answered: a resend of one of them is what a real agent
    /// answers from memory, so `expect_command` skips it — after counting it in `deliveries`.
    answered: HashSet<Uuid>,
    /// How many times each command id arrived, resends included.
    deliveries: HashMap<Uuid, u32>,
}

/// The result of a connection attempt refused before the upgrade.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

/// Opens the agent WebSocket with `key` and optional extra headers; `Err(Refused)` if the server
/// answered with an HTTP error instead of upgrading.
pub async fn open(
    ws_url: &str,
    key: &str,
    origin: Option<&str>,
) -> anyhow::Result<Result<AgentSocket, Refused>> {
    open_with(ws_url, key, origin, None).await
}

/// [`open`] over TLS configured by `tls` (e.g. trusting a test CA, presenting a client
/// certificate) for `wss://` URLs.
pub async fn open_with(
    ws_url: &str,
    key: &str,
    origin: Option<&str>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Result<AgentSocket, Refused>> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {key}"))?,
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin)?);
    }
    // A small read buffer: the bench runs ten thousand of these in one process, and
    // tungstenite's default (128 KiB, zeroed per connection) made the harness's own reconnects
    // cost more than the server's. Messages of any size up to the limit still arrive whole.
    let config = WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .read_buffer_size(4096);
    let connector = tls.map(tokio_tungstenite::Connector::Rustls);
    let dial =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match dial.await {
        Ok((ws, _)) => Ok(Ok(ws)),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(serde_json::from_slice::<Value>)
                .transpose()
                .context("refusal body is not JSON")?
                .unwrap_or(Value::Null);
            Ok(Err(Refused { status, body }))
        }
        Err(e) => Err(e).context("connecting the fake agent"),
    }
}

/// Sends `register` on a freshly opened connection and waits up to `timeout` for the answer;
/// returns the epoch of an accepting `welcome`, fails on anything else.
pub async fn handshake(
    ws: &mut AgentSocket,
    register: &AgentMessage,
    timeout: Duration,
) -> anyhow::Result<i64> {
    let AgentMessage::Register(Register { agent_id, .. }) = register else {
        bail!("a handshake starts with register, not {register:?}");
    };
    ws.send(Message::text(wire::encode(register)))
        .await
        .with_context(|| format!("agent {agent_id}: sending register"))?;
    let answer = tokio::time::timeout(timeout, async {
        while let Some(frame) = ws.next().await {
            match frame? {
                Message::Text(text) => return Ok(wire::decode_server_message(text.as_str())?),
                Message::Close(frame) => bail!("closed before welcome: {frame:?}"),
                _ => continue,
            }
        }
        bail!("connection ended before welcome")
    })
    .await
    .with_context(|| format!("agent {agent_id}: no welcome in {timeout:?}"))?
    .with_context(|| format!("agent {agent_id}: waiting for welcome"))?;
    match answer {
        ServerMessage::Welcome {
            accepted: true,
            epoch,
            ..
        } => Ok(epoch),
        other => bail!("agent {agent_id}: expected an accepting welcome, got {other:?}"),
    }
}

/// The `register` message of a `process` agent with no labels.
pub fn register_message(
    agent_id: &str,
    max_sessions: u32,
    sessions: Vec<SessionStatus>,
) -> AgentMessage {
    AgentMessage::Register(Register {
        agent_id: agent_id.into(),
        platform: "process".into(),
        version: "test".into(),
        capacity: Capacity { max_sessions },
        labels: Default::default(),
        sessions,
        result_receipts: false,
        user_homes: false,
        file_transfer: false,
    })
}

impl FakeAgent {
    /// Connects and registers as `agent_id`, returning once `welcome` arrived.
    pub async fn connect(
        ws_url: &str,
        key: &str,
        agent_id: &str,
        max_sessions: u32,
        sessions: Vec<SessionStatus>,
    ) -> anyhow::Result<Self> {
        let register = register_message(agent_id, max_sessions, sessions);
        Self::connect_with(ws_url, key, agent_id, register).await
    }

    /// [`Self::connect`] as an agent whose runtime keeps user homes (`persistent_home: user`).
    pub async fn connect_with_user_homes(
        ws_url: &str,
        key: &str,
        agent_id: &str,
        max_sessions: u32,
    ) -> anyhow::Result<Self> {
        let AgentMessage::Register(register) = register_message(agent_id, max_sessions, vec![])
        else {
            bail!("register_message made no register");
        };
        let register = AgentMessage::Register(Register {
            user_homes: true,
            ..register
        });
        Self::connect_with(ws_url, key, agent_id, register).await
    }

    /// Connects and registers with `register` as it is (e.g. one saying `file_transfer`).
    pub async fn connect_with(
        ws_url: &str,
        key: &str,
        agent_id: &str,
        register: AgentMessage,
    ) -> anyhow::Result<Self> {
        let mut ws = match open(ws_url, key, None).await? {
            Ok(ws) => ws,
            Err(refused) => bail!("agent {agent_id} refused: {refused:?}"),
        };
        let epoch = handshake(&mut ws, &register, RECV_TIMEOUT).await?;
        let mut agent = Self::raw(agent_id, ws);
        agent.epoch = epoch;
        Ok(agent)
    }

    /// Wraps an already open socket (nothing sent yet).
    pub fn raw(agent_id: &str, ws: AgentSocket) -> Self {
        Self {
            agent_id: agent_id.into(),
            epoch: 0,
            ws,
            answered: HashSet::new(),
            deliveries: HashMap::new(),
        }
    }

    /// How many times the command `id` has arrived so far (resends included; 0 if never).
    pub fn deliveries(&self, id: Uuid) -> u32 {
        self.deliveries.get(&id).copied().unwrap_or(0)
    }

    /// Starts counting afresh (e.g. once a test has let the server settle).
    pub fn forget_deliveries(&mut self) {
        self.deliveries.clear();
    }

    /// The commands that arrived more than once, with how many times each did.
    pub fn repeated(&self) -> BTreeMap<Uuid, u32> {
        self.deliveries
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (*id, *n))
            .collect()
    }

    pub async fn send(&mut self, msg: &AgentMessage) -> anyhow::Result<()> {
        if let AgentMessage::Ack { command_id }
        | AgentMessage::Complete { command_id, .. }
        | AgentMessage::Failed { command_id, .. } = msg
        {
            self.answered.insert(*command_id);
        }
        self.send_text(&wire::encode(msg)).await
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws
            .send(Message::text(text))
            .await
            .context("sending a text frame")
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> anyhow::Result<()> {
        self.ws
            .send(Message::binary(bytes))
            .await
            .context("sending a binary frame")
    }

    pub async fn heartbeat(&mut self, max_sessions: u32) -> anyhow::Result<()> {
        self.send(&AgentMessage::Heartbeat {
            active_sessions: 0,
            capacity: Capacity { max_sessions },
        })
        .await
    }

    /// The next server message (pings and pongs skipped); commands are counted.
    pub async fn recv(&mut self) -> anyhow::Result<ServerMessage> {
        let message = self.recv_uncounted().await?;
        if let ServerMessage::Command(c) = &message {
            *self.deliveries.entry(c.command_id).or_default() += 1;
        }
        Ok(message)
    }

    async fn recv_uncounted(&mut self) -> anyhow::Result<ServerMessage> {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .with_context(|| {
                    format!("agent {} got no message in {RECV_TIMEOUT:?}", self.agent_id)
                })?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return wire::decode_server_message(text.as_str())
                        .with_context(|| format!("server sent an invalid message: {text}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => {
                    bail!("agent {} expected a message, got {other:?}", self.agent_id)
                }
                Some(Err(e)) => bail!("agent {} read failed: {e}", self.agent_id),
                None => bail!("agent {} connection ended", self.agent_id),
            }
        }
    }

    /// The next command not answered yet (a resend of an unanswered one is returned again);
    /// fails on anything else. Resends of answered commands are skipped, and counted.
    pub async fn expect_command(&mut self) -> anyhow::Result<CommandMessage> {
        loop {
            match self.recv().await? {
                ServerMessage::Command(c) if self.answered.contains(&c.command_id) => {}
                ServerMessage::Command(c) => return Ok(c),
                other => bail!("agent {} expected a command, got {other:?}", self.agent_id),
            }
        }
    }

    /// Whether a command arrives within `wait`.
    pub async fn command_within(
        &mut self,
        wait: Duration,
    ) -> anyhow::Result<Option<CommandMessage>> {
        match tokio::time::timeout(wait, self.expect_command()).await {
            Ok(c) => c.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Waits for the server to close the connection, skipping other messages; returns the
    /// close code and reason.
    pub async fn expect_close(&mut self) -> anyhow::Result<(u16, String)> {
        loop {
            let frame = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .with_context(|| {
                    format!("agent {} was not closed in {RECV_TIMEOUT:?}", self.agent_id)
                })?;
            match frame {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Ok((u16::from(frame.code), frame.reason.as_str().to_owned()));
                }
                Some(Ok(Message::Close(None))) => return Ok((1005, String::new())),
                Some(Ok(Message::Text(text))) => {
                    // Skipped, but a command is still counted.
                    if let Ok(ServerMessage::Command(c)) =
                        wire::decode_server_message(text.as_str())
                    {
                        *self.deliveries.entry(c.command_id).or_default() += 1;
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!(
                    "agent {} read failed before a close frame: {e}",
                    self.agent_id
                ),
                None => bail!(
                    "agent {} connection ended without a close frame",
                    self.agent_id
                ),
            }
        }
    }

    /// Plays a well-behaved agent for one command: ack, then complete with `result`.
    pub async fn ack_and_complete(
        &mut self,
        command_id: Uuid,
        result: Value,
    ) -> anyhow::Result<()> {
        self.send(&AgentMessage::Ack { command_id }).await?;
        self.send(&AgentMessage::Complete { command_id, result })
            .await
    }

    /// Receives the next command, checks its action, and completes it successfully.
    pub async fn run_next(&mut self, action: Action) -> anyhow::Result<CommandMessage> {
        let command = self.expect_command().await?;
        if command.action != action {
            bail!("expected a {action} command, got {command:?}");
        }
        let result = match action {
            Action::StartSession | Action::WakeSession => {
                json!({ "vnc_address": "127.0.0.1:5901" })
            }
            _ => json!({}),
        };
        self.ack_and_complete(command.command_id, result).await?;
        Ok(command)
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    pub fn status(session_id: Uuid, state: SessionState) -> SessionStatus {
        SessionStatus {
            session_id,
            state,
            vnc_address: None,
            message: None,
        }
    }
}
