//! Quotas: `/api/v1/users/{username}/quota` and `/api/v1/groups/{name}/quota` (admins only, by
//! the router), and the effective limits and use that session creation and `auth/me` need.
//!
//! Which limit applies is [`QuotaLimits::effective`]'s rule (own, else the most generous group,
//! else the configured default, per dimension). It is computed here, before the creating
//! transaction; the store enforces it inside that transaction under a lock on the user's row.

use axum::Json;
use axum::extract::{Extension, State};
use serde_json::json;
use streamspace_proto::api::{GroupQuota, QuotaLimits, QuotaUsage, SetQuota, Template, UserQuota};
use streamspace_store::SessionSize;
use uuid::Uuid;

use super::{ApiJson, ApiPath, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::state::AppState;

/// The limits that apply to the user `user_id` now.
pub(crate) async fn effective(app: &AppState, user_id: Uuid) -> Result<QuotaLimits, ApiError> {
    let sources = app
        .store
        .quota_sources(user_id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading quota limits"))?;
    Ok(QuotaLimits::effective(
        &sources.own,
        &sources.groups,
        &app.config.default_quota,
    ))
}

/// What the user's sessions hold now.
pub(crate) async fn usage(app: &AppState, user_id: Uuid) -> Result<QuotaUsage, ApiError> {
    app.store
        .quota_usage(user_id, app.config.default_session_size)
        .await
        .map_err(|e| ApiError::from_store(e, "measuring quota use"))
}

/// What a session of `template` counts against a quota.
pub(crate) fn session_size(app: &AppState, template: &Template) -> SessionSize {
    let default = app.config.default_session_size;
    SessionSize {
        cpu_millis: template.resources.cpu_millis.unwrap_or(default.cpu_millis),
        memory_mib: template.resources.memory_mib.unwrap_or(default.memory_mib),
    }
}

async fn user_quota(app: &AppState, username: &str) -> Result<UserQuota, ApiError> {
    let record = app
        .store
        .get_user(username)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a user"))?;
    let limits = app
        .store
        .user_quota(username)
        .await
        .map_err(|e| ApiError::from_store(e, "reading quota limits"))?;
    Ok(UserQuota {
        username: record.user.username,
        limits,
        effective: effective(app, record.user.id).await?,
        usage: usage(app, record.user.id).await?,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{username}/quota",
    operation_id = "quotas_get_user",
    tag = "quotas",
    summary = "Show a user's quota and use",
    params(("username" = String, Path, description = "the user's name")),
    responses(
        (status = 200, description = "The quota", body = streamspace_proto::api::UserQuota),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such user", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get_user(
    State(app): State<AppState>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<UserQuota>, ApiError> {
    Ok(Json(user_quota(&app, &username).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/users/{username}/quota",
    operation_id = "quotas_set_user",
    tag = "quotas",
    summary = "Set a user's own quota limits",
    params(("username" = String, Path, description = "the user's name")),
    request_body = streamspace_proto::api::SetQuota,
    responses(
        (status = 200, description = "The quota as it is now", body = streamspace_proto::api::UserQuota),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such user", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn set_user(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<SetQuota>,
) -> Result<Json<UserQuota>, ApiError> {
    let entry = audit(&actor, "user.quota", username.clone(), json!(body));
    app.store
        .set_user_quota(&username, &body, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "setting a user's quota"))?;
    Ok(Json(user_quota(&app, &username).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/groups/{name}/quota",
    operation_id = "quotas_get_group",
    tag = "quotas",
    summary = "Show a group's quota limits",
    params(("name" = String, Path, description = "the group's name")),
    responses(
        (status = 200, description = "The quota", body = streamspace_proto::api::GroupQuota),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get_group(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<GroupQuota>, ApiError> {
    let limits = app
        .store
        .group_quota(&name)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a group's quota"))?;
    Ok(Json(GroupQuota { name, limits }))
}

#[utoipa::path(
    put,
    path = "/api/v1/groups/{name}/quota",
    operation_id = "quotas_set_group",
    tag = "quotas",
    summary = "Set a group's quota limits",
    params(("name" = String, Path, description = "the group's name")),
    request_body = streamspace_proto::api::SetQuota,
    responses(
        (status = 200, description = "The quota as it is now", body = streamspace_proto::api::GroupQuota),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn set_group(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SetQuota>,
) -> Result<Json<GroupQuota>, ApiError> {
    let limits = app
        .store
        .set_group_quota(
            &name,
            &body,
            &audit(&actor, "group.quota", name.clone(), json!(body)),
        )
        .await
        .map_err(|e| ApiError::from_store(e, "setting a group's quota"))?;
    Ok(Json(GroupQuota { name, limits }))
}
