//! The cross-replica hop: a viewer, its session's agent, and the agent's data connection may
//! each be on a different replica.
//!
//! - **Opening.** The viewer's replica B does not hold the agent: the cluster records that the
//!   stream's viewer is on B and asks the agent's replica A to send `tunnel_open`, which A does
//!   in [`open_here`].
//! - **Joining.** The data connection lands on some replica C. If C does not hold the pending
//!   tunnel, the cluster names B by the token; C dials `GET /internal/v1/tunnels/data` on B and
//!   copies frames between the agent and B ([`forward`]) — the one replica-to-replica hop. B
//!   hands that socket to the viewer's task exactly as if the agent had dialled B.
//!
//! Calls between replicas carry the cluster's proof (an HMAC under the shared server secret), so
//! only a replica can make them. They are https/wss to a replica that serves TLS (its record
//! says so), verified against the configured CA and `--internal-tls-name` (see `crate::tls`);
//! `streamspace_replica_hops_total{kind, scheme}` counts them.

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message as AxMessage, WebSocket};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use streamspace_proto::tunnel::{
    MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES, STREAM_READ_BUFFER_BYTES, TOKEN_PARAM,
};
use streamspace_proto::wire::ServerMessage;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cluster::{self, AUTH_HEADER, Peer, RemoteOpen, RemoteTransfer};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /internal/v1/tunnels/open`: another replica's viewer needs our agent to dial.
pub(crate) async fn open_here(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RemoteOpen>,
) -> Response {
    if !cluster::verify(&app.keys.replicas, &headers, "open", &body.open.token) {
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

/// `POST /internal/v1/transfers/open`: another replica's request needs our agent to carry a
/// file transfer.
pub(crate) async fn open_transfer_here(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<RemoteTransfer>,
) -> Response {
    if !cluster::verify(&app.keys.replicas, &headers, "open", &body.open.token) {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    match app
        .hub
        .send(&body.agent_id, ServerMessage::TransferOpen(body.open))
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

/// Dials the viewer's replica for `token` on behalf of `agent_id`, then copies frames between
/// the agent's socket and it until either ends.
pub(crate) async fn forward(
    app: AppState,
    agent: WebSocket,
    peer: Peer,
    token: String,
    agent_id: String,
) {
    let url = peer.ws_url(&format!(
        "/internal/v1/tunnels/data?{TOKEN_PARAM}={token}&agent_id={agent_id}"
    ));
    let address = &peer.address;
    let Ok(mut request) = url.as_str().into_client_request() else {
        return;
    };
    let Ok(auth) = HeaderValue::from_str(&cluster::proof(&app.keys.replicas, "data", &token))
    else {
        return;
    };
    request.headers_mut().insert(AUTH_HEADER, auth);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(STREAM_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    crate::metrics::replica_hop("data", peer.scheme());
    let connector = tokio_tungstenite::Connector::Rustls(app.peer_tls.clone());
    let dial = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(connector),
    );
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
