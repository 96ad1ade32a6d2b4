//! The agent's connection loop against in-test control-plane WebSocket servers: handshake,
//! registration, heartbeats, commands and duplicates, reconnection and server rotation.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use streamspace_agent::{AgentConfig, AgentError};
use streamspace_proto::SessionState;
use streamspace_proto::api::Action;
use streamspace_proto::wire::{self, AgentMessage, CommandMessage, Register, ServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);
const KEY: &str = "test-agent-key";

/// A control plane that accepts agent WebSockets and hands each one to the test.
struct FakeServer {
    base_url: String,
    connections: mpsc::Receiver<Conn>,
    task: JoinHandle<()>,
}

struct Conn {
    authorization: Option<String>,
    path: String,
    ws: WebSocketStream<TcpStream>,
}

impl FakeServer {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/prefix", listener.local_addr()?);
        let (tx, connections) = mpsc::channel(8);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut seen = (None, String::new());
                // The error type is tungstenite's, not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback = |req: &Request, resp: Response| {
                    seen.0 = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.1 = req.uri().path().to_owned();
                    Ok(resp)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    continue;
                };
                let conn = Conn {
                    authorization: seen.0,
                    path: seen.1,
                    ws,
                };
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            base_url,
            connections,
            task,
        })
    }

    async fn accept(&mut self) -> anyhow::Result<Conn> {
        tokio::time::timeout(WAIT, self.connections.recv())
            .await
            .with_context(|| format!("no agent connected to {} within {WAIT:?}", self.base_url))?
            .context("server stopped")
    }

    /// Accepts a connection, checks the handshake and returns it with the registration.
    async fn accept_registered(&mut self) -> anyhow::Result<(Conn, Register)> {
        let mut conn = self.accept().await?;
        assert_eq!(
            conn.authorization.as_deref(),
            Some(format!("Bearer {KEY}").as_str()),
            "the agent key is sent as a bearer token"
        );
        assert_eq!(conn.path, "/prefix/api/v1/agents/connect");
        let AgentMessage::Register(register) = conn.recv().await? else {
            bail!("the first message was not register");
        };
        Ok((conn, register))
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    async fn send(&mut self, msg: &ServerMessage) -> anyhow::Result<()> {
        self.ws.send(Message::text(wire::encode(msg))).await?;
        Ok(())
    }

    /// Welcomes the agent as a server that predates result receipts.
    async fn welcome(&mut self) -> anyhow::Result<()> {
        self.welcome_with(false).await
    }

    async fn welcome_with(&mut self, result_receipts: bool) -> anyhow::Result<()> {
        self.send(&ServerMessage::Welcome {
            accepted: true,
            heartbeat_interval_secs: 1,
            replica_id: "r1".into(),
            epoch: 1,
            reason: None,
            result_receipts,
        })
        .await
    }

    /// Reads up to and including the `n`th heartbeat; the command results among the messages.
    async fn results_until_heartbeats(&mut self, n: usize) -> anyhow::Result<Vec<AgentMessage>> {
        let (mut seen, mut results) = (0, Vec::new());
        while seen < n {
            match self.recv().await? {
                AgentMessage::Heartbeat { .. } => seen += 1,
                m @ (AgentMessage::Complete { .. } | AgentMessage::Failed { .. }) => {
                    results.push(m)
                }
                _ => {}
            }
        }
        Ok(results)
    }

    async fn recv(&mut self) -> anyhow::Result<AgentMessage> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .context("no message from the agent")?
                .context("the agent closed the connection")??;
            match frame {
                Message::Text(text) => return Ok(wire::decode_agent_message(text.as_str())?),
                Message::Close(frame) => bail!("the agent closed the connection: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next message that is neither a heartbeat nor a session status.
    async fn reply(&mut self) -> anyhow::Result<AgentMessage> {
        loop {
            match self.recv().await? {
                AgentMessage::Heartbeat { .. } | AgentMessage::SessionStatus(_) => {}
                other => return Ok(other),
            }
        }
    }

    async fn session_status(&mut self) -> anyhow::Result<wire::SessionStatus> {
        loop {
            if let AgentMessage::SessionStatus(s) = self.recv().await? {
                return Ok(s);
            }
        }
    }
}

struct Agent {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    fn start(config: AgentConfig) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(streamspace_agent::run(config, shutdown.clone()));
        Self { shutdown, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .context("the agent did not stop")???;
        Ok(())
    }
}

fn config(servers: &[&FakeServer], state_dir: &std::path::Path) -> AgentConfig {
    let mut config = AgentConfig::new(
        servers.iter().map(|s| s.base_url.clone()).collect(),
        "agent-1",
        KEY,
        state_dir,
    );
    config.labels.insert("zone".into(), "test".into());
    config.max_sessions = 3;
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(200);
    config
}

fn command(action: Action, session_id: Uuid, payload: serde_json::Value) -> CommandMessage {
    CommandMessage {
        command_id: Uuid::now_v7(),
        action,
        session_id: Some(session_id),
        payload,
        attempt: 1,
    }
}

#[tokio::test]
async fn registers_heartbeats_and_answers_commands_and_duplicates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = FakeServer::start().await?;
    let agent = Agent::start(config(&[&server], dir.path()));
    let (mut conn, register) = server.accept_registered().await?;
    assert_eq!(register.agent_id, "agent-1");
    assert_eq!(register.platform, "process");
    assert_eq!(register.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(register.capacity.max_sessions, 3);
    assert_eq!(
        register.labels.get("zone").map(String::as_str),
        Some("test")
    );
    assert!(register.sessions.is_empty(), "{:?}", register.sessions);

    conn.welcome().await?;
    let heartbeat = conn.recv().await?;
    assert!(
        matches!(heartbeat, AgentMessage::Heartbeat { active_sessions: 0, capacity } if capacity.max_sessions == 3),
        "a heartbeat follows the welcome: {heartbeat:?}"
    );

    let stop = command(Action::StopSession, Uuid::now_v7(), json!(null));
    conn.send(&ServerMessage::Command(stop.clone())).await?;
    assert_eq!(
        conn.reply().await?,
        AgentMessage::Ack {
            command_id: stop.command_id
        }
    );
    let complete = conn.reply().await?;
    assert!(
        matches!(&complete, AgentMessage::Complete { command_id, .. } if *command_id == stop.command_id),
        "{complete:?}"
    );

    let mut resent = stop.clone();
    resent.attempt = 2;
    conn.send(&ServerMessage::Command(resent)).await?;
    assert_eq!(
        conn.reply().await?,
        complete,
        "a duplicate gets the same complete, no ack"
    );

    conn.send(&ServerMessage::Ping).await?;
    assert!(matches!(conn.recv().await?, AgentMessage::Heartbeat { .. }));
    agent.stop().await?;

    // A restarted agent over the same state directory still answers from its log.
    let agent = Agent::start(config(&[&server], dir.path()));
    let (mut conn, _) = server.accept_registered().await?;
    conn.welcome().await?;
    conn.send(&ServerMessage::Command(stop)).await?;
    assert_eq!(conn.reply().await?, complete);
    agent.stop().await
}

#[tokio::test]
async fn results_are_sent_again_until_the_server_confirms_them() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = FakeServer::start().await?;
    let agent = Agent::start(config(&[&server], dir.path()));
    let (mut conn, register) = server.accept_registered().await?;
    assert!(register.result_receipts, "the agent asks for receipts");
    conn.welcome_with(true).await?;
    let stop = command(Action::StopSession, Uuid::now_v7(), json!(null));
    conn.send(&ServerMessage::Command(stop.clone())).await?;
    assert!(matches!(conn.reply().await?, AgentMessage::Ack { .. }));
    let complete = conn.reply().await?;
    assert!(
        matches!(&complete, AgentMessage::Complete { command_id, .. } if *command_id == stop.command_id),
        "{complete:?}"
    );

    // The connection is lost before the server confirmed: the next one gets the result first.
    drop(conn);
    let (mut conn, _) = server.accept_registered().await?;
    conn.welcome_with(true).await?;
    assert_eq!(
        conn.reply().await?,
        complete,
        "an unconfirmed result is sent again after reconnecting"
    );
    // Still no receipt: it comes again within a heartbeat interval, on the same connection.
    assert_eq!(
        conn.reply().await?,
        complete,
        "an unconfirmed result is sent again after a heartbeat interval"
    );
    conn.send(&ServerMessage::ResultRecorded {
        command_id: stop.command_id,
    })
    .await?;
    // A resend may cross the receipt before the next heartbeat; none may follow it.
    conn.results_until_heartbeats(1).await?;
    let after = conn.results_until_heartbeats(2).await?;
    assert!(
        after.is_empty(),
        "nothing is resent once the server confirmed: {after:?}"
    );

    // A server that predates receipts re-asks on reconnect instead; the agent keeps nothing
    // for it and sends no result twice.
    let stop2 = command(Action::StopSession, Uuid::now_v7(), json!(null));
    conn.send(&ServerMessage::Command(stop2.clone())).await?;
    assert!(matches!(conn.reply().await?, AgentMessage::Ack { .. }));
    assert!(matches!(conn.reply().await?, AgentMessage::Complete { .. }));
    drop(conn);
    let (mut conn, _) = server.accept_registered().await?;
    conn.welcome().await?;
    let after = conn.results_until_heartbeats(3).await?;
    assert!(
        after.is_empty(),
        "no resends to a server without receipts: {after:?}"
    );
    agent.stop().await
}

#[tokio::test]
async fn a_dropped_connection_is_retried_on_the_next_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = FakeServer::start().await?;
    let mut b = FakeServer::start().await?;
    let agent = Agent::start(config(&[&a, &b], dir.path()));
    let (mut conn, _) = a.accept_registered().await?;
    conn.welcome().await?;
    assert!(matches!(conn.recv().await?, AgentMessage::Heartbeat { .. }));
    drop(conn);
    let (mut conn, _) = b.accept_registered().await?;
    conn.welcome().await?;
    assert!(matches!(conn.recv().await?, AgentMessage::Heartbeat { .. }));
    conn.ws.close(None).await?;
    let (_conn, _) = a.accept_registered().await?;
    agent.stop().await
}

#[tokio::test]
async fn a_shutdown_message_moves_the_agent_to_the_next_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = FakeServer::start().await?;
    let mut b = FakeServer::start().await?;
    let mut cfg = config(&[&a, &b], dir.path());
    // Were the agent to back off after a shutdown, it would not reconnect within the test.
    cfg.backoff_min = Duration::from_secs(60);
    cfg.backoff_max = Duration::from_secs(60);
    let agent = Agent::start(cfg);
    let (mut conn, _) = a.accept_registered().await?;
    conn.welcome().await?;
    conn.send(&ServerMessage::Shutdown {
        reason: "replica stopping".into(),
    })
    .await?;
    let (mut conn, _) = b.accept_registered().await?;
    conn.welcome().await?;
    assert!(matches!(conn.recv().await?, AgentMessage::Heartbeat { .. }));
    agent.stop().await
}

#[tokio::test]
async fn a_bad_message_or_a_refusal_leads_to_a_reconnect() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = FakeServer::start().await?;
    let agent = Agent::start(config(&[&a], dir.path()));

    let (mut conn, _) = a.accept_registered().await?;
    conn.send(&ServerMessage::Welcome {
        accepted: false,
        heartbeat_interval_secs: 1,
        replica_id: "r1".into(),
        epoch: 1,
        reason: Some("unknown agent".into()),
        result_receipts: false,
    })
    .await?;
    let (mut conn, _) = a.accept_registered().await?;
    conn.welcome().await?;
    // Of another protocol version: the connection cannot go on.
    conn.ws
        .send(Message::text("{\"v\":2,\"type\":\"ping\"}"))
        .await?;
    // The agent says why it leaves, then comes back.
    let close = loop {
        match tokio::time::timeout(WAIT, conn.ws.next()).await? {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => bail!("expected a close frame, got {other:?}"),
        }
    };
    let code = close.map(|f| u16::from(f.code));
    assert_eq!(
        code,
        Some(wire::close_code::INVALID_MESSAGE),
        "close code names the problem"
    );
    let (_conn, _) = a.accept_registered().await?;
    agent.stop().await
}

#[tokio::test]
async fn an_unreadable_message_fails_its_command_and_keeps_the_connection() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut a = FakeServer::start().await?;
    let agent = Agent::start(config(&[&a], dir.path()));
    let (mut conn, _) = a.accept_registered().await?;
    conn.welcome().await?;

    let unknown_action = Uuid::now_v7();
    conn.ws
        .send(Message::text("{\"v\":1,\"type\":\"teleport\"}"))
        .await?;
    conn.ws
        .send(Message::text(format!(
            r#"{{"v":1,"type":"command","command_id":"{unknown_action}","action":"teleport","attempt":1}}"#
        )))
        .await?;
    conn.send(&ServerMessage::Ping).await?;
    let error = loop {
        match conn.recv().await? {
            AgentMessage::Failed { command_id, error } if command_id == unknown_action => {
                break error;
            }
            AgentMessage::Heartbeat { .. } => {}
            other => bail!("expected the unreadable command to fail, got {other:?}"),
        }
    };
    assert!(
        error.starts_with("the agent could not read this command"),
        "{error}"
    );
    // The ping sent after both is answered on the same connection.
    loop {
        if let AgentMessage::Heartbeat { .. } = conn.recv().await? {
            break;
        }
    }
    agent.stop().await
}

#[tokio::test]
async fn a_started_session_is_reported_after_an_agent_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = FakeServer::start().await?;
    let agent = Agent::start(config(&[&server], dir.path()));
    let (mut conn, _) = server.accept_registered().await?;
    conn.welcome().await?;

    let session = Uuid::now_v7();
    let template = json!({
        "template": {
            "name": "xterm", "command": ["xterm"], "env": {},
            "created_at": "2026-01-01T00:00:00Z"
        }
    });
    let start = command(Action::StartSession, session, template);
    conn.send(&ServerMessage::Command(start.clone())).await?;
    assert_eq!(
        conn.reply().await?,
        AgentMessage::Ack {
            command_id: start.command_id
        }
    );
    let AgentMessage::Complete { result, .. } = conn.reply().await? else {
        bail!("start did not complete");
    };
    let address = result["vnc_address"]
        .as_str()
        .context("result has vnc_address")?;
    let banner = streamspace_testkit::vnc::read_rfb_banner(address).await?;
    assert_eq!(banner, "RFB 003.008\n");
    let status = conn.session_status().await?;
    assert_eq!(
        (status.state, status.vnc_address.as_deref()),
        (SessionState::Running, Some(address))
    );
    agent.stop().await?;

    // The session outlives the agent; the next agent reports it when it registers.
    let agent = Agent::start(config(&[&server], dir.path()));
    let (mut conn, register) = server.accept_registered().await?;
    let held: Vec<_> = register
        .sessions
        .iter()
        .map(|s| (s.session_id, s.state, s.vnc_address.as_deref()))
        .collect();
    assert_eq!(held, vec![(session, SessionState::Running, Some(address))]);
    conn.welcome().await?;
    let stop = command(Action::StopSession, session, json!(null));
    conn.send(&ServerMessage::Command(stop.clone())).await?;
    conn.reply().await?;
    assert!(matches!(conn.reply().await?, AgentMessage::Complete { .. }));
    let status = conn.session_status().await?;
    assert_eq!(status.state, SessionState::Terminated);
    agent.stop().await
}

#[tokio::test]
async fn invalid_configuration_is_refused_up_front() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut bad = AgentConfig::new(vec!["ftp://nowhere".into()], "a", "k", dir.path());
    let err = streamspace_agent::run(bad.clone(), CancellationToken::new()).await;
    assert!(matches!(err, Err(AgentError::InvalidConfig(_))), "{err:?}");
    bad.servers.clear();
    let err = streamspace_agent::run(bad, CancellationToken::new()).await;
    assert!(matches!(err, Err(AgentError::InvalidConfig(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn a_session_whose_program_exits_is_reported_failed_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = FakeServer::start().await?;
    let agent = Agent::start(config(&[&server], dir.path()));
    let (mut conn, _) = server.accept_registered().await?;
    conn.welcome().await?;
    let session = Uuid::now_v7();
    let payload = json!({
        "template": {
            "name": "short", "command": ["sh", "-c", "sleep 0.3"],
            "created_at": "2026-01-01T00:00:00Z"
        }
    });
    let start = command(Action::StartSession, session, payload);
    conn.send(&ServerMessage::Command(start)).await?;
    assert!(matches!(conn.reply().await?, AgentMessage::Ack { .. }));
    assert!(matches!(conn.reply().await?, AgentMessage::Complete { .. }));
    assert_eq!(conn.session_status().await?.state, SessionState::Running);

    let failed = conn.session_status().await?;
    assert_eq!(failed.session_id, session);
    assert_eq!(failed.state, SessionState::Failed);
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("program")),
        "{failed:?}"
    );
    // Two more heartbeats pass without the failure being reported again.
    let mut heartbeats = 0;
    while heartbeats < 2 {
        match conn.recv().await? {
            AgentMessage::Heartbeat {
                active_sessions, ..
            } => {
                assert_eq!(active_sessions, 0, "the failed session is not counted");
                heartbeats += 1;
            }
            other => bail!("unexpected {other:?}"),
        }
    }
    agent.stop().await
}
