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
//!
//! The connection is either an upgrade to a raw stream (`Upgrade: streamspace-stream/1`, the
//! bytes as they are after the `101`) or a WebSocket of binary frames, which agents fall back to
//! when something between them and the control plane passes only WebSocket upgrades
//! ([`DataUpgrade`]). `streamspace_tunnel_data_connections_total{transport}` counts which.

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use streamspace_proto::tunnel::{
    MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES, RAW_STREAM_PROTOCOL, STREAM_READ_BUFFER_BYTES,
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
use crate::streams::{DataConn, Pending, TakeError};
use crate::tls::{ClientCert, require_agent_cert};

#[utoipa::path(
    get,
    path = "/api/v1/agents/tunnel",
    operation_id = "agent_tunnel",
    tag = "websockets",
    summary = "An agent's data connection for one viewer stream (raw upgrade or WebSocket)",
    params(crate::tunnel::viewer::TokenQuery),
    responses(
        (status = 101, description = "Switching to a raw stream (`Upgrade: streamspace-stream/1`) or to the WebSocket protocol"),
        (status = 400, description = "Neither a raw-stream nor a WebSocket upgrade", body = streamspace_proto::api::ErrorBody),
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
    upgrade: Result<DataUpgrade, ApiError>,
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
    upgrade: Result<DataUpgrade, ApiError>,
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
    let upgrade = upgrade?;
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
                return Ok(upgrade.on_upgrade(move |conn| {
                    tasks.track_future(remote::forward(app, conn, peer, token, agent_id))
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

/// A data connection's upgrade: to a raw stream when the request asks for
/// [`RAW_STREAM_PROTOCOL`], else to a WebSocket. Refusals are JSON errors.
pub(crate) enum DataUpgrade {
    WebSocket(WebSocketUpgrade),
    Raw(hyper::upgrade::OnUpgrade),
}

impl<S: Send + Sync> FromRequestParts<S> for DataUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if !asks_for_raw(&parts.headers) {
            return WebSocketUpgrade::from_request_parts(parts, state)
                .await
                .map(Self::WebSocket)
                .map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text()));
        }
        let upgrading = parts.version == Version::HTTP_11
            && parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        let on_upgrade = upgrading
            .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
            .flatten();
        on_upgrade.map(Self::Raw).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a raw stream needs an HTTP/1.1 request with `Connection: upgrade`",
            )
        })
    }
}

fn asks_for_raw(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(RAW_STREAM_PROTOCOL))
}

impl DataUpgrade {
    /// Answers `101` and, once the connection has switched, runs `then` with it.
    pub(crate) fn on_upgrade<F, Fut>(self, then: F) -> Response
    where
        F: FnOnce(DataConn) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match self {
            Self::WebSocket(upgrade) => upgrade
                .max_message_size(MAX_FRAME_BYTES)
                .max_frame_size(MAX_FRAME_BYTES)
                .read_buffer_size(STREAM_READ_BUFFER_BYTES)
                .write_buffer_size(0)
                .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
                .on_failed_upgrade(
                    |e| tracing::debug!(error = %e, "data connection upgrade failed"),
                )
                .on_upgrade(move |socket| {
                    crate::metrics::data_connection("websocket");
                    then(DataConn::WebSocket(Box::new(socket)))
                }),
            Self::Raw(on_upgrade) => {
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => {
                            crate::metrics::data_connection("raw");
                            then(DataConn::Raw(TokioIo::new(upgraded))).await;
                        }
                        Err(e) => tracing::debug!(error = %e, "data connection upgrade failed"),
                    }
                });
                let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
                let headers = response.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(
                    header::UPGRADE,
                    HeaderValue::from_static(RAW_STREAM_PROTOCOL),
                );
                response
            }
        }
    }
}

fn deliver_on_upgrade(upgrade: DataUpgrade, pending: Pending) -> Response {
    upgrade.on_upgrade(move |conn| async move {
        if !pending.deliver(conn) {
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
    upgrade: Result<DataUpgrade, ApiError>,
) -> Response {
    if !cluster::verify(&app.keys.replicas, &headers, "data", &query.token) {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => return e.into_response(),
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
