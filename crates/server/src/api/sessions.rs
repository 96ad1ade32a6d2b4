//! `/api/v1/sessions`: create (places the session and queues its start), list, get, stop,
//! hibernate and wake. Every state change is a command for the session's agent; the session
//! itself moves when the agent reports back.
//!
//! Creating a session is refused with 409 `quota_exceeded` when it would take its owner past
//! a quota (checked by the store in the creating transaction; see `quotas`).
//!
//! A session belongs to the user who created it. Users see and act on their own; operators
//! and admins on all (the policy decides). Someone else's session is answered 404.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{Action, CreateSession, Page, Session, SessionFilter, SessionState};
use streamspace_proto::wire::StartSessionPayload;
use streamspace_store::{NewCommand, NewSession, SessionQuery, StoreError, UserHomeUse};
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery, audit, paging, quotas};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::policy::{self, Resource};
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    operation_id = "sessions_create",
    tag = "sessions",
    summary = "Start a session from a template",
    request_body = streamspace_proto::api::CreateSession,
    responses(
        (status = 201, description = "The new session (pending)", body = streamspace_proto::api::Session),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such template", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "A quota would be exceeded (`quota_exceeded`); the template uses the owner's home, and another session of theirs uses it (`home_in_use`) or the agent holding it is offline or full (`home_agent_unavailable`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "No online agent has room (`no_capacity`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let template = match app.store.get_template(&body.template).await {
        Ok(t) => t,
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::not_found(format!(
                "template {:?} not found",
                body.template
            )));
        }
        Err(e) => return Err(ApiError::from_store(e, "reading a template")),
    };
    if !actor.allowed(policy::Action::ReadTemplate, Resource::Template(&template)) {
        return Err(ApiError::not_found(format!(
            "template {:?} not found",
            body.template
        )));
    }
    actor.may(
        policy::Action::LaunchTemplate,
        Resource::Template(&template),
    )?;
    let size = quotas::session_size(&app, &template);
    let quota = quotas::effective(&app, actor.user_id()).await?;
    let user_home = template.persistent_home.is_user();
    let payload = StartSessionPayload {
        template,
        user_id: user_home.then(|| actor.user_id()),
    };
    let payload = serde_json::to_value(payload).map_err(|e| {
        tracing::error!(error = %e, "encoding a start_session payload failed");
        ApiError::internal()
    })?;
    let new = NewSession {
        id: Uuid::now_v7(),
        template: body.template.clone(),
        owner: actor.principal.username.clone(),
        owner_id: actor.user_id(),
        command_id: Uuid::now_v7(),
        payload,
        platform: None,
        quota,
        size,
        default_size: app.config.default_session_size,
        user_home: user_home.then_some(UserHomeUse {
            shared: app.config.shared_user_homes,
        }),
    };
    // The store adds the agent it chooses to the entry's detail.
    let entry = audit(
        &actor,
        "session.create",
        new.id.to_string(),
        json!({ "template": new.template }),
    );
    let (session, command) = app
        .store
        .create_session(&new, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "creating a session"))?;
    tracing::info!(
        session_id = %session.id,
        agent_id = %command.agent_id,
        command_id = %command.command_id,
        template = %session.template,
        "session created"
    );
    app.route_to(&command.agent_id).await;
    Ok((StatusCode::CREATED, Json(for_actor(&actor, session))))
}

#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    operation_id = "sessions_list",
    tag = "sessions",
    summary = "List sessions (users see only their own)",
    params(streamspace_proto::api::SessionFilter),
    responses(
        (status = 200, description = "A page of sessions, newest first", body = streamspace_proto::api::Page<streamspace_proto::api::Session>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiQuery(filter): ApiQuery<SessionFilter>,
) -> Result<Json<Page<Session>>, ApiError> {
    let limit = paging::limit(filter.limit)?;
    let before = paging::parsed_key::<Uuid>(filter.cursor.as_deref())?;
    let owner_id = if actor.allowed(policy::Action::ListAllSessions, Resource::System) {
        match &filter.owner {
            Some(username) => match app.store.get_user(username).await {
                Ok(record) => Some(record.user.id),
                Err(StoreError::NotFound { .. }) => {
                    return Ok(Json(Page {
                        items: Vec::new(),
                        next_cursor: None,
                    }));
                }
                Err(e) => return Err(ApiError::from_store(e, "reading a user")),
            },
            None => None,
        }
    } else {
        Some(actor.user_id())
    };
    let sessions = app
        .store
        .list_sessions(&SessionQuery {
            owner_id,
            agent_id: filter.agent_id.as_deref(),
            before,
            limit: Some(limit as i64 + 1),
        })
        .await
        .map_err(|e| ApiError::from_store(e, "listing sessions"))?;
    let sessions = sessions.into_iter().map(|s| for_actor(&actor, s)).collect();
    Ok(Json(paging::from_overfetch(
        sessions,
        limit,
        |s: &Session| s.id.to_string(),
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}",
    operation_id = "sessions_get",
    tag = "sessions",
    summary = "Show a session",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    responses(
        (status = 200, description = "The session", body = streamspace_proto::api::Session),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Session>, ApiError> {
    let session = load(&app, &actor, id, policy::Action::ReadSession).await?;
    Ok(Json(for_actor(&actor, session)))
}

/// Reads a session the actor may do `action` to; anyone else's answers 404.
pub(crate) async fn load(
    app: &AppState,
    actor: &Actor,
    id: Uuid,
    action: policy::Action,
) -> Result<Session, ApiError> {
    let session = app
        .store
        .get_session(id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a session"))?;
    actor.may(action, Resource::Session(&session))?;
    Ok(session)
}

/// A session as the actor may see it: the agent host's internal VNC address is for operators.
fn for_actor(actor: &Actor, mut session: Session) -> Session {
    if !actor.allowed(policy::Action::ManageAgents, Resource::System) {
        session.vnc_address = None;
    }
    session
}

/// Every state a session can be stopped from.
const STOPPABLE: [SessionState; 4] = [
    SessionState::Pending,
    SessionState::Starting,
    SessionState::Running,
    SessionState::Hibernated,
];

#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    operation_id = "sessions_stop",
    tag = "sessions",
    summary = "Stop a session",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    responses(
        (status = 202, description = "Stopping: the stop command is queued", body = streamspace_proto::api::Session),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session has already ended", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn stop(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    session_command(&app, &actor, id, Action::StopSession, &STOPPABLE).await
}

/// Queues a stop of session `id` as `actor` would with `DELETE /api/v1/sessions/{id}`.
pub(super) async fn stop_session(app: &AppState, actor: &Actor, id: Uuid) -> Result<(), ApiError> {
    session_command(app, actor, id, Action::StopSession, &STOPPABLE)
        .await
        .map(|_| ())
}

#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/hibernate",
    operation_id = "sessions_hibernate",
    tag = "sessions",
    summary = "Hibernate a running session",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    responses(
        (status = 202, description = "The hibernate command is queued", body = streamspace_proto::api::Session),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not running", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn hibernate(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    session_command(
        &app,
        &actor,
        id,
        Action::HibernateSession,
        &[SessionState::Running],
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/wake",
    operation_id = "sessions_wake",
    tag = "sessions",
    summary = "Wake a hibernated session",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    responses(
        (status = 202, description = "The wake command is queued", body = streamspace_proto::api::Session),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not hibernated", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn wake(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    session_command(
        &app,
        &actor,
        id,
        Action::WakeSession,
        &[SessionState::Hibernated],
    )
    .await
}

/// Queues `action` for the session's agent if the session is in one of `allowed_from`.
async fn session_command(
    app: &AppState,
    actor: &Actor,
    id: Uuid,
    action: Action,
    allowed_from: &[SessionState],
) -> Result<(StatusCode, Json<Session>), ApiError> {
    let session = load(app, actor, id, policy::Action::ControlSession).await?;
    let Some(agent_id) = session.agent_id.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "session {id} was never placed on an agent (state {})",
                session.state
            ),
        ));
    };
    let command = NewCommand {
        command_id: Uuid::now_v7(),
        agent_id: agent_id.clone(),
        session_id: Some(id),
        action,
        payload: serde_json::Value::Null,
        send_now: None,
    };
    let entry = audit(
        actor,
        &format!("session.{}", verb(action)),
        id.to_string(),
        json!({ "command_id": command.command_id, "agent_id": agent_id }),
    );
    let (store, allowed_from) = (app.store.clone(), allowed_from.to_vec());
    let created = app
        .create_command(agent_id.clone(), move |send_now| async move {
            let command = NewCommand {
                send_now,
                ..command
            };
            store
                .create_session_command(id, &allowed_from, &command, &entry)
                .await
                .map_err(|e| ApiError::from_store(e, "queueing a session command"))
        })
        .await?;
    tracing::info!(
        session_id = %id,
        %agent_id,
        command_id = %created.command_id,
        action = %action,
        "session command queued"
    );
    Ok((StatusCode::ACCEPTED, Json(for_actor(actor, session))))
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::StartSession => "start",
        Action::StopSession => "stop",
        Action::HibernateSession => "hibernate",
        Action::WakeSession => "wake",
        Action::Ping => "ping",
        Action::DeleteUserHome => "delete the user home of",
    }
}
