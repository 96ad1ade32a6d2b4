//! Simulated agents: real WebSocket clients speaking the agent protocol, in-process. Each one
//! registers, heartbeats, and acknowledges and completes every command the moment it arrives —
//! the fastest agent there can be, so the numbers measure the control plane. A `start_session`
//! whose template is named in `targets` becomes a running session whose "VNC server" is that TCP
//! address; viewers of it get a data connection carried to that address by the real agent's code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use streamspace_proto::api::{Action, SessionState};
use streamspace_proto::wire::{
    self, AgentMessage, Capacity, CommandMessage, ServerMessage, SessionStatus,
};
use streamspace_testkit::fake_agent;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// How long registration may take before the harness gives up.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(20);
/// Sessions a simulated agent takes unless its spec says otherwise.
pub const MAX_SESSIONS: u32 = 10;
/// How long a viewer's stream may take to reach its target and dial its data connection.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Who a simulated agent is and where it connects (JSON for an agent in its own process).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// The control connection's URL (`ws://…/api/v1/agents/connect`).
    pub ws_url: String,
    pub key: String,
    pub agent_id: String,
    pub heartbeat: Duration,
    /// Template name → the TCP address its sessions' "VNC server" is.
    pub targets: HashMap<String, SocketAddr>,
    /// Most sessions it takes (what it registers and heartbeats).
    pub max_sessions: u32,
    /// What `wss://` URLs are verified with (a bench CA); `None` for plain replicas. Not
    /// carried to a separate agents process: only in-process agents speak TLS.
    #[serde(skip)]
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Connects, registers and returns a task that answers commands until `stop` turns true; the
/// task returns how many commands it completed.
pub async fn spawn(
    spec: Spec,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<u64>>> {
    let Spec {
        ws_url,
        key,
        agent_id,
        heartbeat,
        targets,
        max_sessions,
        tls,
    } = spec;
    // The testkit's connection and handshake (no Nagle delay, as the real agent).
    let mut ws = match fake_agent::open_with(&ws_url, &key, None, tls.clone())
        .await
        .with_context(|| format!("connecting agent {agent_id} to {ws_url}"))?
    {
        Ok(ws) => ws,
        Err(refused) => bail!("agent {agent_id} refused by {ws_url}: {refused:?}"),
    };
    let register = fake_agent::register_message(&agent_id, max_sessions, vec![]);
    fake_agent::handshake(&mut ws, &register, REGISTER_TIMEOUT).await?;
    let tunnel_url = ws_url.replacen("/agents/connect", "/agents/tunnel", 1);
    let key = key.to_owned();
    Ok(tokio::spawn(async move {
        let mut completed = 0u64;
        let mut sessions: HashMap<Uuid, SocketAddr> = HashMap::new();
        // The first heartbeat one interval after the welcome, as the real agent sends it.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    let beat = AgentMessage::Heartbeat {
                        active_sessions: 0,
                        capacity: Capacity { max_sessions },
                    };
                    ws.send(Message::text(wire::encode(&beat))).await?;
                }
                frame = ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => bail!("agent {agent_id}: read failed: {e}"),
                        None => bail!("agent {agent_id}: the server closed the connection"),
                    };
                    match wire::decode_server_message(text.as_str())? {
                        ServerMessage::Command(c) => {
                            let (result, status) = answer(&c, &targets, &mut sessions);
                            let ack = AgentMessage::Ack { command_id: c.command_id };
                            let done = AgentMessage::Complete { command_id: c.command_id, result };
                            ws.feed(Message::text(wire::encode(&ack))).await?;
                            ws.feed(Message::text(wire::encode(&done))).await?;
                            if let Some(status) = status {
                                let msg = AgentMessage::SessionStatus(status);
                                ws.feed(Message::text(wire::encode(&msg))).await?;
                            }
                            ws.flush().await?;
                            completed += 1;
                        }
                        ServerMessage::TunnelOpen(open) => {
                            let Some(&target) = sessions.get(&open.session_id) else {
                                continue;
                            };
                            // The real agent's data path, so the numbers are the agent's.
                            let (url, key, tls) = (tunnel_url.clone(), key.clone(), tls.clone());
                            tokio::spawn(async move {
                                let target = target.to_string();
                                let carried = streamspace_agent::tunnel::carry_stream(
                                    &url, &key, &open.token, &target, STREAM_OPEN_TIMEOUT, tls,
                                );
                                if let Err(e) = carried.await {
                                    let e = streamspace_agent::Chain(&e);
                                    eprintln!("simulated agent: stream to {target} failed: {e}");
                                }
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        let _ = ws.close(None).await;
        Ok(completed)
    }))
}

/// What a command's completion carries, and the session status to report after it.
fn answer(
    c: &CommandMessage,
    targets: &HashMap<String, SocketAddr>,
    sessions: &mut HashMap<Uuid, SocketAddr>,
) -> (serde_json::Value, Option<SessionStatus>) {
    let template = c.payload["template"]["name"].as_str().unwrap_or_default();
    match (c.action, c.session_id, targets.get(template)) {
        (Action::StartSession, Some(session_id), Some(&addr)) => {
            sessions.insert(session_id, addr);
            let status = SessionStatus {
                session_id,
                state: SessionState::Running,
                vnc_address: Some(addr.to_string()),
                message: None,
            };
            (json!({ "vnc_address": addr.to_string() }), Some(status))
        }
        _ => (json!({ "pong": true }), None),
    }
}
