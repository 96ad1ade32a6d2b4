//! Session rules over the API: `/api/v1/groups/{name}/rules` (admins only, by the router) and
//! `GET /api/v1/sessions/{id}/rules`, what applies to the caller on one of their sessions (the
//! web UI shows or hides its clipboard, files and recording controls by it). Templates carry
//! their rules as a field (`/api/v1/templates`).

use axum::Json;
use axum::extract::{Extension, State};
use serde_json::json;
use streamspace_proto::api::{EffectiveRules, SessionRules};
use uuid::Uuid;

use super::{ApiJson, ApiPath, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::policy;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/groups/{name}/rules",
    operation_id = "rules_get_group",
    tag = "groups",
    summary = "Show a group's session rules",
    params(("name" = String, Path, description = "the group's name")),
    responses(
        (status = 200, description = "The rules (a field left out: the group says nothing about it)", body = streamspace_proto::api::SessionRules),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get_group(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SessionRules>, ApiError> {
    let rules = app
        .store
        .group_rules(&name)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a group's rules"))?;
    Ok(Json(rules))
}

#[utoipa::path(
    put,
    path = "/api/v1/groups/{name}/rules",
    operation_id = "rules_set_group",
    tag = "groups",
    summary = "Replace a group's session rules",
    params(("name" = String, Path, description = "the group's name")),
    request_body = streamspace_proto::api::SessionRules,
    responses(
        (status = 200, description = "The rules as they are now", body = streamspace_proto::api::SessionRules),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn set_group(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SessionRules>,
) -> Result<Json<SessionRules>, ApiError> {
    crate::rules::validate(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let rules = app
        .store
        .set_group_rules(
            &name,
            &body,
            &audit(&actor, "group.rules", name.clone(), json!(body)),
        )
        .await
        .map_err(|e| ApiError::from_store(e, "setting a group's rules"))?;
    Ok(Json(rules))
}

#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/rules",
    operation_id = "sessions_rules",
    tag = "sessions",
    summary = "The clipboard, file-transfer and recording rules that apply to you on a session",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    responses(
        (status = 200, description = "The rules that apply to the caller", body = streamspace_proto::api::EffectiveRules),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn of_session(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EffectiveRules>, ApiError> {
    let session = super::sessions::load(&app, &actor, id, policy::Action::ReadSession).await?;
    Ok(Json(
        crate::rules::effective(&app, &session, &actor.principal).await?,
    ))
}
