//! `/api/v1/groups` (admins only, by the router): groups and their members. Templates name the
//! groups whose members may launch them.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{CreateGroup, Group, Page, PageQuery, UpdateGroup};
use streamspace_store::NewGroup;
use uuid::Uuid;

use super::users::valid_name;
use super::{ApiJson, ApiPath, ApiQuery, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest group description accepted.
const MAX_DESCRIPTION: usize = 1024;

#[utoipa::path(
    get,
    path = "/api/v1/groups",
    operation_id = "groups_list",
    tag = "groups",
    summary = "List groups",
    params(streamspace_proto::api::PageQuery),
    responses(
        (status = 200, description = "A page of groups", body = streamspace_proto::api::Page<streamspace_proto::api::Group>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<Group>>, ApiError> {
    let groups = app
        .store
        .list_groups()
        .await
        .map_err(|e| ApiError::from_store(e, "listing groups"))?;
    let page = super::paging::of_list(groups, page.limit, page.cursor.as_deref(), |g| {
        g.name.clone()
    })?;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/groups/{name}",
    operation_id = "groups_get",
    tag = "groups",
    summary = "Show a group",
    params(("name" = String, Path, description = "the group's name")),
    responses(
        (status = 200, description = "The group", body = streamspace_proto::api::Group),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get(
    State(app): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Group>, ApiError> {
    let group = app
        .store
        .get_group(&name)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a group"))?;
    Ok(Json(group))
}

fn check_description(description: &str) -> Result<(), ApiError> {
    if description.len() > MAX_DESCRIPTION {
        return Err(ApiError::bad_request(format!(
            "description must be at most {MAX_DESCRIPTION} bytes"
        )));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/v1/groups",
    operation_id = "groups_create",
    tag = "groups",
    summary = "Create a group",
    request_body = streamspace_proto::api::CreateGroup,
    responses(
        (status = 201, description = "The new group", body = streamspace_proto::api::Group),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The name is taken", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    if !valid_name(&body.name) {
        return Err(ApiError::bad_request(format!(
            "group name {:?} must be 1-64 lower-case letters, digits, '.', '_', '-' or '@', \
             starting with a letter or digit",
            body.name
        )));
    }
    check_description(&body.description)?;
    let entry = audit(&actor, "group.create", body.name.clone(), json!({}));
    let group = app
        .store
        .create_group(
            &NewGroup {
                id: Uuid::now_v7(),
                name: body.name,
                description: body.description,
            },
            &entry,
        )
        .await
        .map_err(|e| ApiError::from_store(e, "creating a group"))?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/groups/{name}",
    operation_id = "groups_update",
    tag = "groups",
    summary = "Change a group",
    params(("name" = String, Path, description = "the group's name")),
    request_body = streamspace_proto::api::UpdateGroup,
    responses(
        (status = 200, description = "The group as it is now", body = streamspace_proto::api::Group),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn update(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateGroup>,
) -> Result<Json<Group>, ApiError> {
    if let Some(description) = &body.description {
        check_description(description)?;
    }
    let entry = audit(&actor, "group.update", name.clone(), json!({}));
    let group = app
        .store
        .update_group(&name, body.description.as_deref(), &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "changing a group"))?;
    Ok(Json(group))
}

#[utoipa::path(
    delete,
    path = "/api/v1/groups/{name}",
    operation_id = "groups_remove",
    tag = "groups",
    summary = "Delete a group",
    params(("name" = String, Path, description = "the group's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn remove(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let entry = audit(&actor, "group.delete", name.clone(), json!({}));
    app.store
        .delete_group(&name, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "deleting a group"))?;
    app.revoked("group deleted", None).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/api/v1/groups/{name}/members/{username}",
    operation_id = "groups_add_member",
    tag = "groups",
    summary = "Add a user to a group",
    params(("name" = String, Path, description = "the group's name"), ("username" = String, Path, description = "the user's name")),
    responses(
        (status = 200, description = "The group with the member", body = streamspace_proto::api::Group),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group or user", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn add_member(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath((name, username)): ApiPath<(String, String)>,
) -> Result<Json<Group>, ApiError> {
    let entry = audit(
        &actor,
        "group.member_add",
        name.clone(),
        json!({ "user": username }),
    );
    app.store
        .add_group_member(&name, &username, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "adding a group member"))?;
    app.revoked("group member added", None).await;
    get(State(app), ApiPath(name)).await
}

#[utoipa::path(
    delete,
    path = "/api/v1/groups/{name}/members/{username}",
    operation_id = "groups_remove_member",
    tag = "groups",
    summary = "Remove a user from a group",
    params(("name" = String, Path, description = "the group's name"), ("username" = String, Path, description = "the user's name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such group, user or membership", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn remove_member(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath((name, username)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let entry = audit(
        &actor,
        "group.member_remove",
        name.clone(),
        json!({ "user": username }),
    );
    app.store
        .remove_group_member(&name, &username, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "removing a group member"))?;
    app.revoked("group member removed", None).await;
    Ok(StatusCode::NO_CONTENT)
}
