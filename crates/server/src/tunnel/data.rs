//! The agent's data connection, `GET /api/v1/agents/tunnel?token=…`.
//!
//! Authenticated twice, before the upgrade: the agent key in `Authorization` (401 otherwise)
//! and the one-time stream token, which must name a tunnel pending on this replica for that
//! key's agent (401 if unknown or already used, 403 if it belongs to another agent). Browsers
//! (requests with an `Origin` header) are refused, as on the control endpoint.
//!
//! A token unknown here may belong to a tunnel pending on another replica; forwarding the
//! connection there (one hop, found in Redis by the token) is where the cross-replica tunnel
//! will plug in.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use streamspace_proto::tunnel::{MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES};
use streamspace_store::ApiKeyKind;

use super::TakeError;
use super::viewer::TokenQuery;
use crate::api::ApiQuery;
use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn connect(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<TokenQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
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
    let record = app
        .hasher
        .find(app.store.as_ref(), key)
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
    let pending = app.tunnels.take(token, &agent_id).map_err(|e| match e {
        TakeError::Unknown => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown or already used stream token",
        ),
        TakeError::OtherAgent => ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_agent",
            "this stream token was issued to another agent",
        ),
    })?;
    tracing::debug!(
        %agent_id,
        tunnel_id = %pending.tunnel_id,
        session_id = %pending.session_id,
        "agent data connection accepted"
    );
    Ok(upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "data connection upgrade failed"))
        .on_upgrade(move |socket| async move {
            if !pending.deliver(socket) {
                tracing::debug!("the viewer left before the agent's data connection arrived");
            }
        }))
}
