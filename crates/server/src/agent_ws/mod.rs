//! The agent WebSocket endpoint, `GET /api/v1/agents/connect`.
//!
//! Before the upgrade: browsers (any request with an `Origin` header) are refused with 403, a
//! client certificate is required if so configured (401, see `crate::tls`), the agent key is
//! checked (401 otherwise), and a connection slot is taken (503 when full). The
//! upgrade caps messages and frames at [`wire::MAX_MESSAGE_BYTES`] and bounds the write buffer.
//! What happens after the upgrade lives in [`connection`] (transport: one reader, one writer)
//! and [`messages`] (what each agent message does).

mod connection;
mod messages;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use streamspace_proto::wire;
use streamspace_store::{ApiKeyKind, ApiKeyRecord};

use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tls::{ClientCert, require_agent_cert};

/// Most bytes tungstenite may hold unsent for one connection before writes fail.
const MAX_WRITE_BUFFER: usize = 4 * wire::MAX_MESSAGE_BYTES;
/// Bytes tungstenite reads from the socket at a time, allocated up front per connection. Its
/// 128 KiB default made one idle agent cost a replica about 140 KiB (`agents` benchmark, see
/// docs/BENCHMARKS.md); control messages are small, and a larger one is still read whole, in
/// several reads.
const READ_BUFFER: usize = 4 * 1024;

#[utoipa::path(
    get,
    path = "/api/v1/agents/connect",
    operation_id = "agent_connect",
    tag = "websockets",
    summary = "An agent's control connection (WebSocket)",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = streamspace_proto::api::ErrorBody),
        (status = 401, description = "No valid agent key", body = streamspace_proto::api::ErrorBody),
        (status = 403, description = "A browser `Origin` was sent (`forbidden_origin`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "The replica is shutting down", body = streamspace_proto::api::ErrorBody),
    ),
    security(("agent_key" = [])),
)]
pub(crate) async fn connect(
    State(app): State<AppState>,
    headers: HeaderMap,
    cert: Option<Extension<ClientCert>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if headers.contains_key(header::ORIGIN) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "agent connections must not come from a browser (an Origin header was sent)",
        )
        .into_response();
    }
    if let Err(e) = require_agent_cert(app.config.tls.as_ref(), cert.map(|c| c.0)) {
        return e.into_response();
    }
    let key = match authenticate(&app, &headers).await {
        Ok(key) => key,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(rejection.status(), "bad_request", rejection.body_text())
                .into_response();
        }
    };
    if app.shutdown.is_cancelled() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this replica is shutting down; connect to another one",
        )
        .into_response();
    }
    let Ok(slot) = app.agent_slots.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "this replica holds as many agent connections as it is configured for",
        )
        .into_response();
    };
    upgrade
        .max_message_size(wire::MAX_MESSAGE_BYTES)
        .max_frame_size(wire::MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "agent WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let tasks = app.tasks.clone();
            tasks.track_future(connection::run(app, socket, key, slot))
        })
}

/// The agent key in the `Authorization` header, if it is a valid, unrevoked agent key.
async fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<ApiKeyRecord, ApiError> {
    let token = bearer_token(headers)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <agent key>`"))?;
    // Looked up in batches with the other agents connecting at the same moment (a replica's
    // agents all come back at once when it dies); a key stored under an older master secret
    // is then looked for on its own.
    let keyring = &app.keys.credentials;
    let record = match app.agent_keys.call(keyring.mac(token)).await {
        Ok(Some(record)) => Some(record),
        Ok(None) => crate::keys::find_older(app.store.as_ref(), keyring, token)
            .await
            .map_err(|e| ApiError::from_store(e, "looking up an agent key"))?,
        Err(e) => {
            tracing::error!(error = %e, "looking up an agent key failed");
            return Err(ApiError::internal());
        }
    };
    match record {
        Some(record) if record.kind == ApiKeyKind::Agent && record.agent_id.is_some() => Ok(record),
        _ => Err(ApiError::unauthorized("invalid or revoked agent key")),
    }
}
