//! The cross-replica hop: a viewer, its session's agent, and the agent's data connection may
//! each be on a different replica.
//!
//! - **Opening.** The viewer's replica B does not hold the agent: it records the stream token in
//!   Redis (`streamspace:tunnel:{token}` = B, expiring with the open timeout) and asks the
//!   agent's owner A (from the hub's owner record) to send `tunnel_open`, with
//!   `POST /internal/v1/tunnels/open` on A's internal address.
//! - **Joining.** The data connection lands on some replica C. If C does not hold the pending
//!   tunnel, it finds B in Redis by the token, dials `GET /internal/v1/tunnels/data` on B and
//!   copies frames between the agent and B — the one replica-to-replica hop. B hands that socket
//!   to the viewer's task exactly as if the agent had dialled B.
//!
//! Calls between replicas carry `x-streamspace-replica-auth`: an HMAC of the purpose and the
//! stream token under the server secret all replicas share, so only a replica can make them.

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message as AxMessage, WebSocket};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use streamspace_proto::tunnel::{MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES, TOKEN_PARAM};
use streamspace_proto::wire::{ServerMessage, TunnelOpen};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cluster::redis::link::RedisLink;
use crate::error::ApiError;
use crate::state::AppState;

/// Header carrying the inter-replica HMAC.
pub(crate) const AUTH_HEADER: &str = "x-streamspace-replica-auth";

fn token_key(token: &str) -> String {
    format!("streamspace:tunnel:{token}")
}

/// The HMAC proving a request comes from a replica.
pub(crate) fn proof(app: &AppState, purpose: &str, token: &str) -> String {
    app.hasher
        .hash(&format!("streamspace replica\n{purpose}\n{token}"))
}

pub(crate) fn verify(app: &AppState, headers: &HeaderMap, purpose: &str, token: &str) -> bool {
    let expected = proof(app, purpose, token);
    headers
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| {
            given.len() == expected.len()
                && given
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

/// Body of `POST /internal/v1/tunnels/open`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteOpen {
    pub agent_id: String,
    pub open: TunnelOpen,
}

/// Asks the replica owning `agent_id` to send `open` to it, after recording in Redis that the
/// tunnel's viewer is here. Errors say why the stream cannot be opened.
pub(crate) async fn open_elsewhere(
    app: &AppState,
    link: &RedisLink,
    agent_id: &str,
    open: TunnelOpen,
) -> Result<(), String> {
    let owner = crate::cluster::redis::routing::owner(link, agent_id)
        .await
        .map_err(|e| format!("Redis is unreachable: {e}"))?
        .map(|(_, replica)| replica)
        .ok_or_else(|| format!("agent {agent_id} is not connected to any replica"))?;
    let address = crate::cluster::replicas::address_of(link, &owner)
        .await
        .map_err(|e| format!("Redis is unreachable: {e}"))?
        .ok_or_else(|| format!("replica {owner} holding agent {agent_id} is gone"))?;
    let ttl_ms = u64::try_from(app.config.tunnel.open_timeout.as_millis()).unwrap_or(u64::MAX);
    let (key, me) = (token_key(&open.token), app.replica.id.clone());
    link.with_conn(|mut conn| async move {
        redis::cmd("SET")
            .arg(key)
            .arg(me)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async::<()>(&mut conn)
            .await
    })
    .await
    .map_err(|e| format!("Redis is unreachable: {e}"))?;
    let auth = proof(app, "open", &open.token);
    let body = RemoteOpen {
        agent_id: agent_id.to_owned(),
        open,
    };
    let answer = reqwest::Client::new()
        .post(format!("http://{address}/internal/v1/tunnels/open"))
        .header(AUTH_HEADER, auth)
        .timeout(app.config.tunnel.open_timeout)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("replica {owner} is unreachable: {e}"))?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("replica {owner} answered {}", answer.status()))
    }
}

/// `POST /internal/v1/tunnels/open`: another replica's viewer needs our agent to dial.
pub(crate) async fn open_here(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RemoteOpen>,
) -> Response {
    if !verify(&app, &headers, "open", &body.open.token) {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    match app
        .hub
        .send(&body.agent_id, ServerMessage::TunnelOpen(body.open))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            e.to_string(),
        )
        .into_response(),
    }
}

/// The replica holding the viewer of stream `token`, and its address, if another one.
pub(crate) async fn viewer_replica(
    app: &AppState,
    link: &RedisLink,
    token: &str,
) -> Option<String> {
    let key = token_key(token);
    let replica: Option<String> = link
        .with_conn(
            |mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await },
        )
        .await
        .ok()
        .flatten();
    let replica = replica.filter(|r| *r != app.replica.id)?;
    crate::cluster::replicas::address_of(link, &replica)
        .await
        .ok()
        .flatten()
}

/// Dials the viewer's replica for `token` on behalf of `agent_id`, then copies frames between
/// the agent's socket and it until either ends.
pub(crate) async fn forward(
    app: AppState,
    agent: WebSocket,
    address: String,
    token: String,
    agent_id: String,
) {
    let url = format!(
        "ws://{address}/internal/v1/tunnels/data?{TOKEN_PARAM}={token}&agent_id={agent_id}"
    );
    let Ok(mut request) = url.as_str().into_client_request() else {
        return;
    };
    let Ok(auth) = HeaderValue::from_str(&proof(&app, "data", &token)) else {
        return;
    };
    request.headers_mut().insert(AUTH_HEADER, auth);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    let dial = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let peer = match tokio::time::timeout(app.config.tunnel.open_timeout, dial).await {
        Ok(Ok((peer, _))) => peer,
        Ok(Err(e)) => return tracing::warn!(%address, error = %e, "forwarding a stream failed"),
        Err(_) => return tracing::warn!(%address, "forwarding a stream timed out"),
    };
    tracing::info!(%address, %agent_id, "stream forwarded to the viewer's replica");
    let (mut agent_tx, mut agent_rx) = agent.split();
    let (mut peer_tx, mut peer_rx) = peer.split();
    let send_timeout = app.config.tunnel.send_timeout;
    let to_peer = async {
        while let Some(Ok(msg)) = agent_rx.next().await {
            let out = match msg {
                AxMessage::Binary(b) => TMessage::Binary(b),
                AxMessage::Close(_) => break,
                _ => continue,
            };
            if !matches!(
                tokio::time::timeout(send_timeout, peer_tx.send(out)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
    };
    let to_agent = async {
        while let Some(Ok(msg)) = peer_rx.next().await {
            let out = match msg {
                TMessage::Binary(b) => AxMessage::Binary(b),
                TMessage::Close(_) => break,
                _ => continue,
            };
            if !matches!(
                tokio::time::timeout(send_timeout, agent_tx.send(out)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
    };
    tokio::select! {
        () = to_peer => {},
        () = to_agent => {},
    }
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        agent_tx.send(AxMessage::Close(None)),
    )
    .await;
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        peer_tx.send(TMessage::Close(None)),
    )
    .await;
}
