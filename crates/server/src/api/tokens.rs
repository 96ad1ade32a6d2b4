//! `/api/v1/tokens`: personal API tokens. A token acts as its user — never more — and is
//! shown once. Users manage their own; an admin may list, create and revoke anyone's.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use streamspace_proto::api::{ApiToken, CreateToken, CreatedToken, Page};
use streamspace_store::{ApiKeyKind, AuditEntry, StoreError};
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::keys::create_user_credential;
use crate::policy::{Action, Resource};
use crate::state::AppState;

/// Longest token name accepted.
const MAX_NAME: usize = 64;
/// Longest lifetime a token may be given: ten years.
const MAX_LIFETIME_SECS: u64 = 10 * 366 * 24 * 3600;

/// Query of `GET /api/v1/tokens`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenQuery {
    /// Another user's tokens (admins).
    user: Option<String>,
    /// Tokens per page.
    limit: Option<u32>,
    /// Where the previous page ended.
    cursor: Option<String>,
}

/// The id of `username`, or the actor's own when none is named; 404 if there is no such user.
async fn target_user(
    app: &AppState,
    actor: &Actor,
    username: Option<&str>,
) -> Result<Uuid, ApiError> {
    match username {
        None => Ok(actor.user_id()),
        Some(name) => match app.store.get_user(name).await {
            Ok(record) => Ok(record.user.id),
            Err(StoreError::NotFound { .. }) => Err(ApiError::not_found("user not found")),
            Err(e) => Err(ApiError::from_store(e, "reading a user")),
        },
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "tokens_list",
    tag = "tokens",
    summary = "List API tokens (the caller's, or a user's for admins)",
    params(TokenQuery),
    responses(
        (status = 200, description = "A page of tokens", body = streamspace_proto::api::Page<streamspace_proto::api::ApiToken>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such user", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiQuery(query): ApiQuery<TokenQuery>,
) -> Result<Json<Page<ApiToken>>, ApiError> {
    let user_id = target_user(&app, &actor, query.user.as_deref()).await?;
    actor.may(Action::ManageToken, Resource::TokenOf(user_id))?;
    let tokens = app
        .store
        .list_tokens(Some(user_id))
        .await
        .map_err(|e| ApiError::from_store(e, "listing tokens"))?;
    let page = super::paging::of_list(tokens, query.limit, query.cursor.as_deref(), |t| {
        t.id.to_string()
    })?;
    Ok(Json(page))
}

/// The detail of a `token.create` entry (the store fills in `expires_at`).
pub(super) fn created_detail(name: &str, user_id: Uuid) -> serde_json::Value {
    json!({ "name": name, "user_id": user_id, "expires_at": null })
}

/// Creates a personal token for `user_id` (the caller has been authorized for it), audited in
/// the same transaction by the entry `audit` makes from the token's id.
pub(super) async fn issue(
    app: &AppState,
    user_id: Uuid,
    name: &str,
    expires_in_secs: Option<u64>,
    audit: impl FnOnce(Uuid) -> AuditEntry,
) -> Result<CreatedToken, ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "name must be 1-{MAX_NAME} bytes without control characters"
        )));
    }
    if let Some(secs) = expires_in_secs
        && !(1..=MAX_LIFETIME_SECS).contains(&secs)
    {
        return Err(ApiError::bad_request(format!(
            "expires_in_secs must be between 1 and {MAX_LIFETIME_SECS}"
        )));
    }
    let (record, token) = create_user_credential(
        app.store.as_ref(),
        &app.keys,
        ApiKeyKind::User,
        user_id,
        name,
        expires_in_secs.map(|s| s as f64),
        audit,
    )
    .await
    .map_err(|e| ApiError::from_store(e, "creating a token"))?;
    Ok(CreatedToken {
        id: record.id,
        name: record.name,
        token,
        expires_at: record.expires_at,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "tokens_create",
    tag = "tokens",
    summary = "Create an API token (its secret is shown once)",
    request_body = streamspace_proto::api::CreateToken,
    responses(
        (status = 201, description = "The token with its secret", body = streamspace_proto::api::CreatedToken),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such user", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let user_id = target_user(&app, &actor, body.user.as_deref()).await?;
    actor.may(Action::ManageToken, Resource::TokenOf(user_id))?;
    let entry = |id: Uuid| {
        audit(
            &actor,
            "token.create",
            id.to_string(),
            created_detail(&body.name, user_id),
        )
    };
    let created = issue(&app, user_id, &body.name, body.expires_in_secs, entry).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "tokens_revoke",
    tag = "tokens",
    summary = "Revoke an API token",
    params(("id" = uuid::Uuid, Path, description = "the token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such token", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn revoke(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found("token not found");
    let record = match app.store.get_api_key(id).await {
        Ok(record) => record,
        Err(StoreError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(ApiError::from_store(e, "reading a token")),
    };
    let owner = match (record.kind, record.user_id) {
        (ApiKeyKind::User | ApiKeyKind::Admin, Some(owner)) if record.revoked_at.is_none() => owner,
        _ => return Err(not_found()),
    };
    actor.may(Action::ManageToken, Resource::TokenOf(owner))?;
    let entry = audit(
        &actor,
        "token.revoke",
        id.to_string(),
        json!({ "user_id": owner }),
    );
    app.store
        .revoke_api_key(id, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "revoking a token"))?;
    app.revoked("token revoked", None).await;
    Ok(StatusCode::NO_CONTENT)
}
