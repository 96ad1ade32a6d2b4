//! Simulated agents: real WebSocket clients speaking the agent protocol, in-process. Each one
//! registers, heartbeats, and acknowledges and completes every command the moment it arrives —
//! the fastest agent there can be, so the numbers measure the control plane.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use streamspace_proto::wire::{self, AgentMessage, Capacity, Register, ServerMessage};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// How long registration may take before the harness gives up.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(20);

/// Connects, registers as `agent_id` and returns a task that answers commands until `stop`
/// turns true; the task returns how many commands it completed.
pub async fn spawn(
    ws_url: &str,
    key: &str,
    agent_id: &str,
    heartbeat: Duration,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<u64>>> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {key}"))?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting agent {agent_id} to {ws_url}"))?;
    let register = AgentMessage::Register(Register {
        agent_id: agent_id.into(),
        platform: "process".into(),
        version: "bench".into(),
        capacity: Capacity { max_sessions: 10 },
        labels: Default::default(),
        sessions: vec![],
    });
    ws.send(Message::text(wire::encode(&register))).await?;
    let welcome = tokio::time::timeout(REGISTER_TIMEOUT, async {
        while let Some(frame) = ws.next().await {
            if let Message::Text(text) = frame? {
                return Ok(wire::decode_server_message(text.as_str())?);
            }
        }
        bail!("connection ended before welcome")
    })
    .await
    .with_context(|| format!("agent {agent_id}: no welcome in {REGISTER_TIMEOUT:?}"))??;
    match welcome {
        ServerMessage::Welcome { accepted: true, .. } => {}
        other => bail!("agent {agent_id}: expected an accepting welcome, got {other:?}"),
    }
    let agent_id = agent_id.to_owned();
    Ok(tokio::spawn(async move {
        let mut completed = 0u64;
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    let beat = AgentMessage::Heartbeat {
                        active_sessions: 0,
                        capacity: Capacity { max_sessions: 10 },
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
                    if let ServerMessage::Command(c) = wire::decode_server_message(text.as_str())? {
                        let ack = AgentMessage::Ack { command_id: c.command_id };
                        let done = AgentMessage::Complete {
                            command_id: c.command_id,
                            result: json!({ "pong": true }),
                        };
                        ws.feed(Message::text(wire::encode(&ack))).await?;
                        ws.feed(Message::text(wire::encode(&done))).await?;
                        ws.flush().await?;
                        completed += 1;
                    }
                }
            }
        }
        let _ = ws.close(None).await;
        Ok(completed)
    }))
}
