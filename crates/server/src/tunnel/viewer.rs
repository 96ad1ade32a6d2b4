//! The browser's side: `POST /api/v1/sessions/{id}/connect` (the session's owner or an
//! operator) and `POST /api/v1/shares/{share_id}/connect` (a user the share link is for) issue
//! a viewer token, and `GET /api/v1/sessions/{id}/vnc?token=…` upgrades to the viewer's
//! WebSocket. What a viewer sends is filtered by its mode and clipboard rule (`rfb_filter`), and
//! what the session sends it by the clipboard rule (`rfb_server`).
//!
//! The WebSocket is websockify-style: raw VNC bytes in binary frames, no subprotocol required,
//! `binary` answered when the browser offers it — so stock noVNC connects as it is. Every
//! refusal happens before the upgrade and is a JSON error: 401 for a missing, forged or expired
//! token, 403 for a token of another session or of a session that has ended, 409 for a session
//! that is not running (yet, or hibernated), 503 when its agent cannot be reached or the replica
//! carries its maximum of streams.

use std::sync::Arc;

use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use streamspace_proto::api::{
    ClipboardPolicy, EffectiveRules, Session, SessionState, Share, ShareMode,
};
use streamspace_proto::tunnel::{
    BINARY_SUBPROTOCOL, ConnectInfo, ConnectRequest, MAX_FRAME_BYTES, MAX_WRITE_BUFFER_BYTES,
    RECORD_PARAM, STREAM_READ_BUFFER_BYTES, close_code,
};
use streamspace_proto::wire::{ServerMessage, TunnelOpen};
use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use super::rfb_filter::{ClientFilter, ClientPolicy, ViewerMode};
use super::rfb_server::{Link, ServerFilter};
use super::splice::{self, Filters, Timing};
use super::token::{self, Access, TokenError};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::hub::DeliveryError;
use crate::policy;
use crate::recording::{Strictness, Viewing};
use crate::state::AppState;
use crate::streams::{Opened, PendingGuard, Tunnels, Watcher};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokenQuery {
    /// The viewer token from `POST /api/v1/sessions/{id}/connect`.
    #[serde(default)]
    token: Option<String>,
    /// `1` asks for the viewing to be recorded (honoured under the `on_request` policy).
    #[serde(default)]
    record: Option<String>,
}

impl TokenQuery {
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.is_empty())
    }
    fn record(&self) -> bool {
        matches!(self.record.as_deref(), Some("1" | "true"))
    }
}

/// Whether `principal`'s viewing of `session` is recorded when `requested`, and how (the
/// session's recording rule, `crate::rules::effective`); 503 when it must be but this replica
/// has nowhere to record it.
fn recording(
    app: &AppState,
    rules: &EffectiveRules,
    requested: bool,
) -> Result<Option<Strictness>, ApiError> {
    let wanted = crate::recording::wanted(rules.recording, requested);
    match (wanted, &app.recorder) {
        (Some(Strictness::Required), None) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "recording_unavailable",
            "viewings of this session must be recorded, and no recording store is configured",
        )),
        (_, None) => Ok(None),
        (wanted, Some(_)) => Ok(wanted),
    }
}

/// `POST /api/v1/sessions/{id}/connect`: a viewer token and the URL to open with it.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/connect",
    operation_id = "sessions_connect",
    tag = "sessions",
    summary = "Get a viewer token and URL for a running session",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    request_body(content = Option<streamspace_proto::tunnel::ConnectRequest>, description = "Optional: `{\"record\": true}` asks for the viewing to be recorded"),
    responses(
        (status = 200, description = "The viewer token and the WebSocket URL to open", body = streamspace_proto::tunnel::ConnectInfo),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not running (`session_not_running`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "Viewings must be recorded and cannot be (`recording_unavailable`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(crate) async fn connect(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    body: axum::body::Bytes,
) -> Result<Json<ConnectInfo>, ApiError> {
    let request: ConnectRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))?
    };
    let session = load_session(&app, id).await?;
    actor.may(
        policy::Action::ControlSession,
        policy::Resource::Session(&session),
    )?;
    require_running(&session)?;
    let rules = crate::rules::effective(&app, &session, &actor.principal).await?;
    let recorded = recording(&app, &rules, request.record)?.is_some();
    let mut info = issue(&app, &headers, &actor, id, Access::Owner, None)?;
    info.recorded = recorded;
    info.clipboard = viewer_clipboard(info.mode, &rules);
    if request.record {
        info.url.push_str(&format!("&{RECORD_PARAM}=1"));
    }
    let entry = crate::audit::entry(
        &actor,
        "session.connect",
        id.to_string(),
        serde_json::json!({ "expires_at": info.expires_at, "recorded": recorded }),
    );
    crate::audit::record_event(&app, &entry).await;
    Ok(Json(info))
}

/// `POST /api/v1/shares/{share_id}/connect`: a viewer token through a share link, carrying
/// the link's mode.
#[utoipa::path(
    post,
    path = "/api/v1/shares/{share_id}/connect",
    operation_id = "shares_connect",
    tag = "sessions",
    summary = "Get a viewer token for a shared session (through its share link)",
    params(("share_id" = uuid::Uuid, Path, description = "the share link's id")),
    responses(
        (status = 200, description = "The viewer token, the WebSocket URL and the link's mode", body = streamspace_proto::tunnel::ConnectInfo),
        (status = 400, description = "A path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 403, description = "The link is for other users (`forbidden`), revoked (`share_revoked`) or expired (`share_expired`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such share link", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not running (`session_not_running`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(crate) async fn connect_shared(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    ApiPath(share_id): ApiPath<Uuid>,
) -> Result<Json<ConnectInfo>, ApiError> {
    let share = app
        .store
        .get_share(share_id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a share link"))?;
    actor.may(policy::Action::UseShare, policy::Resource::Share(&share))?;
    require_active(&share)?;
    let session = load_session(&app, share.session_id).await?;
    require_running(&session)?;
    let rules = crate::rules::effective(&app, &session, &actor.principal).await?;
    let recorded = recording(&app, &rules, false)?.is_some();
    let access = Access::Share {
        id: share.id,
        mode: share.mode,
    };
    let mut info = issue(
        &app,
        &headers,
        &actor,
        session.id,
        access,
        Some(share.expires_at),
    )?;
    info.recorded = recorded;
    info.clipboard = viewer_clipboard(info.mode, &rules);
    let entry = crate::audit::entry(
        &actor,
        "share.connect",
        share.id.to_string(),
        serde_json::json!({
            "session_id": session.id,
            "mode": share.mode,
            "expires_at": info.expires_at,
            "recorded": recorded,
        }),
    );
    crate::audit::record_event(&app, &entry).await;
    Ok(Json(info))
}

/// A viewer token for `session_id` to the actor with `access`, living the configured time but
/// never past `until`, and the URL to open with it.
fn issue(
    app: &AppState,
    headers: &HeaderMap,
    actor: &Actor,
    session_id: Uuid,
    access: Access,
    until: Option<DateTime<Utc>>,
) -> Result<ConnectInfo, ApiError> {
    let ttl = TimeDelta::from_std(app.config.tunnel.viewer_token_ttl)
        .unwrap_or_else(|_| TimeDelta::seconds(60));
    let mut expires_at = Utc::now() + ttl;
    if let Some(until) = until {
        expires_at = expires_at.min(until);
    }
    let token = token::issue_viewer(
        &app.keys.viewer,
        session_id,
        actor.user_id(),
        access,
        expires_at,
    );
    let served_tls = app.config.tls.is_some();
    let base = public_base(app.config.tunnel.public_url.as_deref(), served_tls, headers)?;
    let url = format!("{base}/api/v1/sessions/{session_id}/vnc?token={token}");
    tracing::info!(%session_id, %expires_at, user = %actor.principal.username,
        mode = %access.mode(), share_id = ?access.share_id(), "viewer token issued");
    Ok(ConnectInfo {
        token,
        url,
        expires_at,
        mode: access.mode(),
        recorded: false,
        clipboard: ClipboardPolicy::Both,
    })
}

/// A revoked or expired share link opens nothing.
pub(crate) fn require_active(share: &Share) -> Result<(), ApiError> {
    if share.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "share_revoked",
            "this share link was revoked",
        ));
    }
    if !share.is_active(Utc::now()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "share_expired",
            "this share link has expired",
        ));
    }
    Ok(())
}

/// `GET /api/v1/sessions/{id}/vnc?token=…`: the viewer's WebSocket.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/vnc",
    operation_id = "sessions_vnc",
    tag = "websockets",
    summary = "A viewer's VNC stream (WebSocket, binary frames)",
    params(("id" = uuid::Uuid, Path, description = "the session's id"), crate::tunnel::viewer::TokenQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade", body = streamspace_proto::api::ErrorBody),
        (status = 401, description = "No valid viewer token (`invalid_token`, `token_expired`)", body = streamspace_proto::api::ErrorBody),
        (status = 403, description = "The token is for another session (`wrong_session`)", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not running", body = streamspace_proto::api::ErrorBody),
        (status = 429, description = "Too many streams (`too_many_streams`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "The agent is not connected (`agent_unavailable`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(()),
)]
pub(crate) async fn vnc(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Authorized {
        agent_id,
        user_id,
        access,
        policy,
        recording,
    } = match authorize(&app, id, query).await {
        Ok(authorized) => authorized,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(rejection.status(), "bad_request", rejection.body_text())
                .into_response();
        }
    };
    let (tunnel_id, delivered, guard) = match open_tunnel(&app, id, &agent_id).await {
        Ok(opened) => opened,
        Err(e) => return e.into_response(),
    };
    upgrade
        .protocols([BINARY_SUBPROTOCOL])
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(STREAM_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "viewer upgrade failed"))
        .on_upgrade(move |socket| {
            let span = tracing::info_span!(
                "viewer",
                session_id = %id,
                %tunnel_id,
                agent_id = %agent_id,
                replica_id = %app.config.replica_id,
            );
            let tasks = app.tasks.clone();
            let stream = Stream {
                app,
                session_id: id,
                user_id,
                access,
                policy,
                recording,
                tunnel_id,
                agent_id,
            };
            tasks.track_future(stream.run(socket, delivered, guard).instrument(span))
        })
}

/// What a viewer token opens, checked before the upgrade.
struct Authorized {
    /// The session's agent.
    agent_id: String,
    user_id: Uuid,
    /// Why the user may watch (their own session, or a share link).
    access: Access,
    /// What their stream may carry.
    policy: ClientPolicy,
    /// How the viewing is recorded, if it is.
    recording: Option<(Strictness, Viewing)>,
}

/// Checks the viewer token and that its user may still watch (through a share link: that the
/// link is still active); the session's agent, the user, their access, what their stream may
/// carry (the access's mode and the session rules' clipboard policy for that user), and whether
/// the viewing is recorded.
async fn authorize(app: &AppState, id: Uuid, query: TokenQuery) -> Result<Authorized, ApiError> {
    let token = query
        .token()
        .ok_or_else(|| ApiError::unauthorized("missing `token` query parameter"))?;
    let grant = token::verify_viewer(&app.keys.viewer, token, Utc::now()).map_err(|e| match e {
        TokenError::Invalid => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", e.to_string())
        }
        TokenError::Expired => {
            ApiError::new(StatusCode::UNAUTHORIZED, "token_expired", e.to_string())
        }
    })?;
    if grant.session_id != id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_session",
            "this token was issued for another session",
        ));
    }
    let user = match app.store.get_user_by_id(grant.user_id).await {
        Ok(record) if !record.user.disabled => record.user,
        Ok(_) | Err(streamspace_store::StoreError::NotFound { .. }) => {
            return Err(ApiError::unauthorized(
                "the user this token was issued to can no longer sign in",
            ));
        }
        Err(e) => return Err(ApiError::from_store(e, "reading a viewer's user")),
    };
    if let Some(share_id) = grant.access.share_id() {
        let share = app
            .store
            .get_share(share_id)
            .await
            .map_err(|e| ApiError::from_store(e, "reading a share link"))?;
        require_active(&share)?;
    }
    let session = load_session(app, id).await?;
    require_running(&session)?;
    let agent_id = session.agent_id.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "session_not_running",
            "the session has no agent",
        )
    })?;
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "this replica is shutting down; connect again",
        ));
    }
    let principal = policy::Principal {
        user_id: user.id,
        username: user.username,
        role: user.role,
        groups: user.groups,
    };
    let rules = crate::rules::effective(app, &session, &principal).await?;
    let policy = client_policy(grant.access.mode(), &rules);
    let recording = recording(app, &rules, query.record())?.map(|strictness| {
        let viewing = Viewing {
            session_id: id,
            owner_id: session.owner_id,
            viewer_id: grant.user_id,
            viewer: principal.username.clone(),
            mode: match grant.access.mode() {
                ShareMode::Control => "control",
                ShareMode::ViewOnly => "view_only",
            },
        };
        (strictness, viewing)
    });
    Ok(Authorized {
        agent_id,
        user_id: grant.user_id,
        access: grant.access,
        policy,
        recording,
    })
}

/// Registers a pending tunnel and asks the agent to dial its data connection.
async fn open_tunnel(
    app: &AppState,
    id: Uuid,
    agent_id: &str,
) -> Result<(Uuid, oneshot::Receiver<Opened>, PendingGuard), ApiError> {
    let (open, waiting) = app.tunnels.counts();
    if open + waiting >= app.config.tunnel.max_streams {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "this replica carries as many viewer streams as it is configured for",
        ));
    }
    let tunnel_id = Uuid::now_v7();
    let stream_token = token::new_stream_token();
    let (delivered, guard) =
        app.tunnels
            .expect(stream_token.clone(), tunnel_id, id, agent_id.to_owned());
    let open = TunnelOpen {
        tunnel_id,
        session_id: id,
        token: stream_token,
    };
    let message = ServerMessage::TunnelOpen(open.clone());
    // An agent held by another replica is asked through that replica.
    let sent = match app.hub.send(agent_id, message).await {
        Ok(()) => Ok(()),
        Err(DeliveryError::NotConnected(_)) => app.cluster.open_tunnel(agent_id, open).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        tracing::info!(session_id = %id, %agent_id, error = %e, "cannot open a tunnel");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            format!("the session's agent cannot be reached: {e}"),
        ));
    }
    Ok((tunnel_id, delivered, guard))
}

/// One viewer's stream after the upgrade.
struct Stream {
    app: AppState,
    session_id: Uuid,
    /// Who watches: their streams close when they lose access.
    user_id: Uuid,
    /// Why they may: their stream closes when the share link is revoked, and is filtered by
    /// its mode.
    access: Access,
    /// What the viewer may send.
    policy: ClientPolicy,
    recording: Option<(Strictness, Viewing)>,
    tunnel_id: Uuid,
    agent_id: String,
}

impl Stream {
    async fn run(
        self,
        viewer: WebSocket,
        delivered: oneshot::Receiver<Opened>,
        _pending: PendingGuard,
    ) {
        let tunnel = &self.app.config.tunnel;
        // Whether the agent should hear that the stream is off (it does not know yet).
        let (opened, tell_agent) = tokio::select! {
            () = self.app.shutdown.cancelled() => (Err("the replica is shutting down".to_owned()), true),
            d = tokio::time::timeout(tunnel.open_timeout, delivered) => match d {
                Ok(Ok(opened)) => (opened, false),
                Ok(Err(_)) | Err(_) => (Err("the agent did not open the stream in time".to_owned()), true),
            },
        };
        let data = match opened {
            Ok(data) => data,
            Err(reason) => {
                tracing::warn!(%reason, "viewer stream not opened");
                if tell_agent {
                    self.tell_agent(&reason).await;
                }
                refuse(viewer, &reason).await;
                return;
            }
        };
        let mut tap = match self.start_recording().await {
            Ok(tap) => tap,
            Err(reason) => {
                drop(data);
                refuse(viewer, &reason).await;
                return;
            }
        };
        let tunnels: &Arc<Tunnels> = &self.app.tunnels;
        let watcher = Watcher {
            user_id: self.user_id,
            share_id: self.access.share_id(),
            mode: self.access.mode(),
            since: Utc::now(),
        };
        let open = tunnels.opened(self.session_id, self.tunnel_id, watcher);
        tracing::info!(streams_here = tunnels.counts().0, "viewer stream open");
        let timing = Timing {
            send_timeout: tunnel.send_timeout,
            close_grace: tunnel.close_grace,
        };
        let policy = self.policy;
        let filters = filters(policy);
        let ending = {
            let splice = splice::run(viewer, data, &open.closer, timing, filters, tap.as_mut());
            tokio::pin!(splice);
            // On shutdown both sides still get a close frame: the splice ends through the closer.
            tokio::select! {
                e = &mut splice => e,
                () = self.app.shutdown.cancelled() => {
                    open.closer.close(close_code::GOING_AWAY, "replica shutting down");
                    splice.await
                }
            }
        };
        tracing::info!(code = ending.code, reason = %ending.reason, "viewer stream closed");
        if let Some(tap) = tap {
            tap.finish(&ending.reason).await;
        }
    }

    /// The viewing's recording, if it has one; `Err` (the reason) if it must be recorded and
    /// cannot be. A recording only asked for that cannot start is logged and skipped.
    async fn start_recording(&self) -> Result<Option<crate::recording::Tap>, String> {
        let (Some((strictness, viewing)), Some(recorder)) = (&self.recording, &self.app.recorder)
        else {
            return Ok(None);
        };
        match recorder.start(viewing, *strictness).await {
            Ok(tap) => Ok(Some(tap)),
            Err(e) if *strictness == Strictness::Required => {
                tracing::error!(error = %e, "a viewing that must be recorded could not be");
                Err("this viewing must be recorded, and the recording could not start".to_owned())
            }
            Err(e) => {
                tracing::warn!(error = %e, "the recording asked for could not start");
                Ok(None)
            }
        }
    }

    async fn tell_agent(&self, reason: &str) {
        let close = ServerMessage::TunnelClose {
            tunnel_id: self.tunnel_id,
            reason: reason.to_owned(),
        };
        let _ = self.app.hub.send(&self.agent_id, close).await;
    }
}

/// The filters a viewer's stream passes under `policy`: none for a viewer that may do
/// everything; the client filter when what it sends is limited; and the server filter too when
/// what the session sends is (the two linked).
fn filters(policy: ClientPolicy) -> Filters {
    if policy.passes_everything() {
        return Filters::default();
    }
    if !policy.filters_session_stream() {
        return Filters {
            client: Some(ClientFilter::new(policy)),
            server: None,
        };
    }
    let link = Link::default();
    Filters {
        client: Some(ClientFilter::linked(policy, link.clone())),
        server: Some(ServerFilter::new(policy, link)),
    }
}

/// The clipboard a viewer in `mode` under `rules` has, as its connect answer tells it: what
/// [`client_policy`] lets through, in the rules' terms.
fn viewer_clipboard(mode: ShareMode, rules: &EffectiveRules) -> ClipboardPolicy {
    let policy = client_policy(mode, rules);
    let to_session = policy.clipboard_to_session && mode == ShareMode::Control;
    match (to_session, policy.clipboard_from_session) {
        (true, true) => ClipboardPolicy::Both,
        (true, false) => ClipboardPolicy::ToSession,
        (false, true) => ClipboardPolicy::FromSession,
        (false, false) => ClipboardPolicy::None,
    }
}

/// What a viewer in `mode` under `rules` may send and receive: cut text is filtered both ways
/// by the clipboard policy and its maximum. A view-only watcher gets no clipboard either way:
/// it watches the screen, and what the person at the controls copies is not shown on it.
fn client_policy(mode: ShareMode, rules: &EffectiveRules) -> ClientPolicy {
    let view_only = mode == ShareMode::ViewOnly;
    ClientPolicy {
        mode: match mode {
            ShareMode::Control => ViewerMode::Control,
            ShareMode::ViewOnly => ViewerMode::ViewOnly,
        },
        clipboard_to_session: matches!(
            rules.clipboard,
            ClipboardPolicy::Both | ClipboardPolicy::ToSession
        ),
        clipboard_from_session: !view_only
            && matches!(
                rules.clipboard,
                ClipboardPolicy::Both | ClipboardPolicy::FromSession
            ),
        clipboard_max_bytes: Some(rules.clipboard_max_bytes),
    }
}

async fn refuse(mut viewer: WebSocket, reason: &str) {
    let frame = axum::extract::ws::CloseFrame {
        code: close_code::TUNNEL_FAILED,
        reason: splice::truncate(reason).into(),
    };
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        viewer.send(axum::extract::ws::Message::Close(Some(frame))),
    )
    .await;
}

async fn load_session(app: &AppState, id: Uuid) -> Result<Session, ApiError> {
    app.store
        .get_session(id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a session"))
}

fn require_running(session: &Session) -> Result<(), ApiError> {
    match session.state {
        SessionState::Running => Ok(()),
        SessionState::Terminated | SessionState::Failed => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "session_ended",
            format!("session {} has ended ({})", session.id, session.state),
        )),
        other => Err(ApiError::new(
            StatusCode::CONFLICT,
            "session_not_running",
            format!("session {} is {other}, not running", session.id),
        )),
    }
}

/// `ws(s)://host[/prefix]` for the viewer URL: `wss` when this replica serves TLS itself
/// (`served_tls`) or a proxy says it received https.
fn public_base(
    configured: Option<&str>,
    served_tls: bool,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if let Some(base) = configured {
        let base = base.trim_end_matches('/');
        return Ok(if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        });
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '?', '#']))
        .ok_or_else(|| {
            ApiError::bad_request("no usable Host header to build the viewer URL from")
        })?;
    let tls = served_tls
        || headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    Ok(format!("{}://{host}", if tls { "wss" } else { "ws" }))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_clipboard_policy_and_the_mode_make_the_filter() {
        let rules = |clipboard| EffectiveRules {
            clipboard,
            clipboard_max_bytes: 1000,
            file_transfer: Default::default(),
            transfer_max_bytes: 1,
            recording: Default::default(),
        };
        for (clipboard, to, from) in [
            (ClipboardPolicy::Both, true, true),
            (ClipboardPolicy::ToSession, true, false),
            (ClipboardPolicy::FromSession, false, true),
            (ClipboardPolicy::None, false, false),
        ] {
            let p = client_policy(ShareMode::Control, &rules(clipboard));
            assert_eq!(
                (p.mode, p.clipboard_to_session, p.clipboard_from_session),
                (ViewerMode::Control, to, from),
                "{clipboard:?}"
            );
            assert_eq!(p.clipboard_max_bytes, Some(1000));
            // The connect answer says the same.
            assert_eq!(
                viewer_clipboard(ShareMode::Control, &rules(clipboard)),
                clipboard
            );
        }
        let watcher = client_policy(ShareMode::ViewOnly, &rules(ClipboardPolicy::Both));
        assert_eq!(watcher.mode, ViewerMode::ViewOnly);
        assert!(!watcher.clipboard_from_session);
        assert_eq!(
            viewer_clipboard(ShareMode::ViewOnly, &rules(ClipboardPolicy::Both)),
            ClipboardPolicy::None
        );
    }

    #[test]
    fn the_session_side_is_parsed_only_when_the_rules_limit_it() {
        let policy = |from, max| ClientPolicy {
            mode: ViewerMode::Control,
            clipboard_to_session: true,
            clipboard_from_session: from,
            clipboard_max_bytes: max,
        };
        let f = filters(policy(true, None));
        assert!(f.client.is_none() && f.server.is_none(), "the fast path");
        for (from, max) in [(false, None), (true, Some(1000)), (false, Some(1))] {
            let f = filters(policy(from, max));
            assert!(f.client.is_some() && f.server.is_some(), "{from} {max:?}");
        }
        let f = filters(ClientPolicy {
            clipboard_to_session: false,
            ..policy(true, None)
        });
        assert!(f.client.is_some() && f.server.is_none());
    }

    #[test]
    fn the_viewer_url_follows_config_or_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("10.0.0.1:8080"));
        assert_eq!(
            public_base(None, false, &h).ok().as_deref(),
            Some("ws://10.0.0.1:8080")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(
            public_base(None, false, &h).ok().as_deref(),
            Some("wss://10.0.0.1:8080")
        );
        assert_eq!(
            public_base(Some("https://ss.example/base/"), false, &h)
                .ok()
                .as_deref(),
            Some("wss://ss.example/base")
        );
        assert!(public_base(None, false, &HeaderMap::new()).is_err());
        h.remove("x-forwarded-proto");
        assert_eq!(
            public_base(None, true, &h).ok().as_deref(),
            Some("wss://10.0.0.1:8080"),
            "a replica serving TLS itself hands out wss URLs"
        );
    }
}
