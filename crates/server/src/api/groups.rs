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
