//! `/api/v1/agent-keys`: create (the secret is shown once), list (never secrets), revoke.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{AgentKey, CreateAgentKey, CreatedAgentKey, Page, PageQuery};
use streamspace_store::ApiKeyKind;
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery, audit};
use crate::auth::Actor;
use crate::cluster::AgentRevoked;
use crate::error::{ApiError, ServerError};
use crate::keys;
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/api/v1/agent-keys",
    operation_id = "agent_keys_create",
    tag = "agent-keys",
    summary = "Create an agent key (its secret is shown once)",
    request_body = streamspace_proto::api::CreateAgentKey,
    responses(
        (status = 201, description = "The key with its secret", body = streamspace_proto::api::CreatedAgentKey),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateAgentKey>,
) -> Result<(StatusCode, Json<CreatedAgentKey>), ApiError> {
    let entry = |id: Uuid| {
        audit(
            &actor,
            "agent_key.create",
            id.to_string(),
            json!({ "agent_id": body.agent_id }),
        )
    };
    let created = keys::create_agent_key_with(
        app.store.as_ref(),
        &app.keys.credentials,
        &body.agent_id,
        entry,
    )
    .await
    .map_err(|e| match e {
        ServerError::InvalidInput(message) => ApiError::bad_request(message),
        ServerError::Store(e) => ApiError::from_store(e, "creating an agent key"),
        other => {
            tracing::error!(error = %other, "creating an agent key failed");
            ApiError::internal()
        }
    })?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get,
    path = "/api/v1/agent-keys",
    operation_id = "agent_keys_list",
    tag = "agent-keys",
    summary = "List agent keys",
    params(streamspace_proto::api::PageQuery),
    responses(
        (status = 200, description = "A page of agent keys", body = streamspace_proto::api::Page<streamspace_proto::api::AgentKey>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<AgentKey>>, ApiError> {
    let records = app
        .store
        .list_api_keys(ApiKeyKind::Agent)
        .await
        .map_err(|e| ApiError::from_store(e, "listing agent keys"))?;
    let keys = records.iter().filter_map(|r| r.to_agent_key()).collect();
    let page = super::paging::of_list(keys, page.limit, page.cursor.as_deref(), |k| {
        k.id.to_string()
    })?;
    Ok(Json(page))
}

/// Revokes the key and closes any connection that authenticated with it, on every replica.
#[utoipa::path(
    delete,
    path = "/api/v1/agent-keys/{id}",
    operation_id = "agent_keys_revoke",
    tag = "agent-keys",
    summary = "Revoke an agent key",
    params(("id" = uuid::Uuid, Path, description = "the key's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such agent key", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn revoke(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    // Only agent keys are managed here; an admin token's id answers like an unknown key.
    let is_agent_key = app
        .store
        .list_api_keys(ApiKeyKind::Agent)
        .await
        .map_err(|e| ApiError::from_store(e, "listing agent keys"))?
        .iter()
        .any(|r| r.id == id);
    if !is_agent_key {
        return Err(ApiError::not_found(format!("agent key {id} not found")));
    }
    let entry = audit(&actor, "agent_key.revoke", id.to_string(), json!({}));
    app.store
        .revoke_api_key(id, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "revoking an agent key"))?;
    app.agent_revoked(AgentRevoked::Key(id)).await;
    Ok(StatusCode::NO_CONTENT)
}
