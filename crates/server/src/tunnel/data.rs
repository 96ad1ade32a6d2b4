//! The agent's data connection, `GET /api/v1/agents/tunnel?token=…`.
//!
//! Authenticated twice (three times with `--require-agent-certs`: a client certificate, see
//! `crate::tls`), before the upgrade: the agent key in `Authorization` (401 otherwise)
//! and the one-time stream token, which must name a tunnel pending on this replica for that
//! key's agent (401 if unknown or already used, 403 if it belongs to another agent). Browsers
//! (requests with an `Origin` header) are refused, as on the control endpoint.
//!
//! A token unknown here may belong to a tunnel pending on another replica: the cluster knows
//! which, and the connection is forwarded there, one hop (see [`remote`]).

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use streamspace_proto::tunnel::{
    MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES, STREAM_READ_BUFFER_BYTES,
};
use streamspace_store::ApiKeyKind;

use serde::Deserialize;

use super::remote;
use super::viewer::TokenQuery;
use crate::auth::bearer_token;
use crate::cluster;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;
use crate::streams::{Pending, TakeError};
use crate::tls::{ClientCert, require_agent_cert};

#[utoipa::path(
    get,
    path = "/api/v1/agents/tunnel",
    operation_id = "agent_tunnel",
    tag = "websockets",
    summary = "An agent's data connection for one viewer stream (WebSocket)",
    params(crate::tunnel::viewer::TokenQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = streamspace_proto::api::ErrorBody),
        (status = 401, description = "No valid agent key or stream token", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No stream waits for this token", body = streamspace_proto::api::ErrorBody),
    ),
    security(("agent_key" = [])),
)]
pub(crate) async fn connect(
    State(app): State<AppState>,
    headers: HeaderMap,
    cert: Option<Extension<ClientCert>>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(e) = require_agent_cert(app.config.tls.as_ref(), cert.map(|c| c.0)) {
        return e.into_response();
    }
    match accept(&app, &headers, query, upgrade).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn accept(
    app: &AppState,
    headers: &HeaderMap,
    query: TokenQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if headers.contains_key(header::ORIGIN) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "agent connections must not come from a browser (an Origin header was sent)",
        ));
    }
    let key = bearer_token(headers)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <agent key>`"))?;
    let record = crate::keys::find(app.store.as_ref(), &app.keys.credentials, key)
        .await
        .map_err(|e| ApiError::from_store(e, "looking up an agent key"))?;
    let agent_id = match record {
        Some(r) if r.kind == ApiKeyKind::Agent => r.agent_id,
        _ => None,
    }
    .ok_or_else(|| ApiError::unauthorized("invalid or revoked agent key"))?;
    let upgrade = upgrade.map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text()))?;
    let token = query
        .token()
        .ok_or_else(|| ApiError::unauthorized("missing `token` query parameter"))?;
    let pending = match app.tunnels.take(token, &agent_id) {
        Ok(pending) => pending,
        Err(TakeError::Unknown) => {
            // Perhaps the viewer is on another replica: one hop there.
            if let Some(peer) = app.cluster.viewer_replica(token).await {
                let (app, token) = (app.clone(), token.to_owned());
                let tasks = app.tasks.clone();
                return Ok(bounded(upgrade).on_upgrade(move |socket| {
                    tasks.track_future(remote::forward(app, socket, peer, token, agent_id))
                }));
            }
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "unknown or already used stream token",
            ));
        }
        Err(TakeError::OtherAgent) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_agent",
                "this stream token was issued to another agent",
            ));
        }
    };
    tracing::debug!(
        %agent_id,
        tunnel_id = %pending.tunnel_id,
        session_id = %pending.session_id,
        "agent data connection accepted"
    );
    Ok(deliver_on_upgrade(upgrade, pending))
}

/// The data socket's limits: frames and messages capped, write buffer bounded.
fn bounded(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(STREAM_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
}

fn deliver_on_upgrade(upgrade: WebSocketUpgrade, pending: Pending) -> Response {
    bounded(upgrade)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "data connection upgrade failed"))
        .on_upgrade(move |socket| async move {
            if !pending.deliver(socket) {
                tracing::debug!("the viewer left before the agent's data connection arrived");
            }
        })
}

#[derive(Debug, Deserialize)]
pub(crate) struct InternalQuery {
    token: String,
    agent_id: String,
}

/// `GET /internal/v1/tunnels/data`: a replica forwards the data connection of a stream whose
/// viewer is here (see [`remote`]).
pub(crate) async fn internal(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<InternalQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !cluster::verify(&app.keys.replicas, &headers, "data", &query.token) {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(r) => return ApiError::new(r.status(), "bad_request", r.body_text()).into_response(),
    };
    match app.tunnels.take(&query.token, &query.agent_id) {
        Ok(pending) => deliver_on_upgrade(upgrade, pending),
        Err(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown or already used stream token",
        )
        .into_response(),
    }
}
