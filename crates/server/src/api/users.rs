//! `/api/v1/users` (admins only, by the router): create, list, show, change and delete users.
//!
//! Deleting a user stops their sessions (the sessions stay, ownerless, for the record); the
//! last enabled admin can be neither disabled, demoted nor deleted (the store refuses it in the
//! same transaction). Any change that can take power away forgets this replica's credential
//! cache, so it takes effect here at once.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{
    CreateUser, DeleteUserQuery, HomeDisposal, Page, PageQuery, UpdateUser, User,
};
use streamspace_store::{HomeChoice, NewUser, UserChange};
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::signin::{check_new_password, hash_password};
use crate::state::AppState;

/// Longest display name or email address accepted.
const MAX_TEXT: usize = 256;

/// Whether `name` is acceptable as a username or group name: 1–64 characters of
/// `a-z 0-9 . _ -` (and `@` for usernames that are email addresses), starting with a letter or
/// digit.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'@')
        })
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{field} must be at most {MAX_TEXT} bytes without control characters"
        )));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "users_list",
    tag = "users",
    summary = "List users",
    params(streamspace_proto::api::PageQuery),
    responses(
        (status = 200, description = "A page of users", body = streamspace_proto::api::Page<streamspace_proto::api::User>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<User>>, ApiError> {
    let users = app
        .store
        .list_users()
        .await
        .map_err(|e| ApiError::from_store(e, "listing users"))?;
    let page = super::paging::of_list(users, page.limit, page.cursor.as_deref(), |u| {
        u.username.clone()
    })?;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/users/{username}",
    operation_id = "users_get",
    tag = "users",
    summary = "Show a user",
    params(("username" = String, Path, description = "the user's name")),
    responses(
        (status = 200, description = "The user", body = streamspace_proto::api::User),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such user", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get(
    State(app): State<AppState>,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    let record = app
        .store
        .get_user(&username)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a user"))?;
    Ok(Json(record.user))
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "users_create",
    tag = "users",
    summary = "Create a local user",
    request_body = streamspace_proto::api::CreateUser,
    responses(
        (status = 201, description = "The new user", body = streamspace_proto::api::User),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The name is taken", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    if !valid_name(&body.username) {
        return Err(ApiError::bad_request(format!(
            "username {:?} must be 1-64 lower-case letters, digits, '.', '_', '-' or '@', \
             starting with a letter or digit",
            body.username
        )));
    }
    check_text("display_name", body.display_name.as_deref().unwrap_or(""))?;
    check_text("email", body.email.as_deref().unwrap_or(""))?;
    let password_hash = match body.password {
        Some(password) => {
            check_new_password("password", &password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let entry = audit(
        &actor,
        "user.create",
        body.username.clone(),
        json!({ "role": body.role }),
    );
    let user = app
        .store
        .create_user(
            &NewUser {
                id: Uuid::now_v7(),
                username: body.username.clone(),
                display_name: body.display_name.unwrap_or_default(),
                email: body.email.filter(|e| !e.is_empty()),
                role: body.role,
                password_hash,
            },
            &entry,
        )
        .await
        .map_err(|e| ApiError::from_store(e, "creating a user"))?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{username}",
    operation_id = "users_update",
    tag = "users",
    summary = "Change a user",
    params(("username" = String, Path, description = "the user's name")),
    request_body = streamspace_proto::api::UpdateUser,
    responses(
        (status = 200, description = "The user as it is now", body = streamspace_proto::api::User),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such user", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The change would leave no admin", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn update(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(username): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    if let Some(name) = &body.display_name {
        check_text("display_name", name)?;
    }
    if let Some(email) = &body.email {
        check_text("email", email)?;
    }
    let password_hash = match body.password {
        Some(password) => {
            check_new_password("password", &password)?;
            Some(hash_password(password).await?)
        }
        None => None,
    };
    let change = UserChange {
        role: body.role,
        disabled: body.disabled,
        display_name: body.display_name,
        email: body.email.map(|e| Some(e).filter(|e| !e.is_empty())),
        password_hash,
    };
    let detail = json!({
        "role": change.role,
        "disabled": change.disabled,
        "password_changed": change.password_hash.is_some(),
    });
    let entry = audit(&actor, "user.update", username.clone(), detail);
    let mut user = app
        .store
        .update_user(&username, &change, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "changing a user"))?;
    if body.reset_totp {
        // The store adds `was_enabled` to the entry.
        let entry = audit(&actor, "user.totp_reset", username.clone(), json!({}));
        app.store
            .clear_totp(user.id, &entry)
            .await
            .map_err(|e| ApiError::from_store(e, "resetting a user's one-time codes"))?;
        user.totp_enabled = false;
    }
    // A disabled user loses access altogether: their viewers close too, on every replica.
    let lost_access = user.disabled.then_some(user.id);
    app.revoked("user changed", lost_access).await;
    Ok(Json(user))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{username}",
    operation_id = "users_remove",
    tag = "users",
    summary = "Delete a user",
    params(("username" = String, Path, description = "the user's name"), streamspace_proto::api::DeleteUserQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such user", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The last admin cannot be deleted (`conflict`), or the user has a home and `home` does not say whether to keep or delete it (`home_choice_required`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn remove(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(username): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeleteUserQuery>,
) -> Result<StatusCode, ApiError> {
    let record = app
        .store
        .get_user(&username)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a user"))?;
    let sessions = app
        .store
        .list_sessions(&streamspace_store::SessionQuery {
            owner_id: Some(record.user.id),
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::from_store(e, "listing a user's sessions"))?;
    // The entry is written with the deletion, so it names the sessions the deletion goes on
    // to stop (each stop is audited as it is queued).
    let live: Vec<Uuid> = sessions
        .iter()
        .filter(|s| !s.state.is_terminal())
        .map(|s| s.id)
        .collect();
    let mut detail = json!({ "stopped_sessions": live });
    if let Some(home) = query.home {
        detail["home"] = home.as_str().into();
    }
    let entry = audit(&actor, "user.delete", username.clone(), detail);
    let home = match query.home {
        None => HomeChoice::Ask,
        Some(HomeDisposal::Keep) => HomeChoice::Keep,
        Some(HomeDisposal::Delete) => HomeChoice::Delete {
            command_id: Uuid::now_v7(),
        },
    };
    let (_, removal) = app
        .store
        .delete_user_and_home(&username, home, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "deleting a user"))?;
    app.revoked("user deleted", Some(record.user.id)).await;
    if let Some(command) = removal {
        tracing::info!(user_id = %record.user.id, agent_id = %command.agent_id,
            command_id = %command.command_id, "user home removal queued");
        app.route_to(&command.agent_id).await;
    }
    for id in live {
        if let Err(e) = super::sessions::stop_session(&app, &actor, id).await {
            tracing::warn!(session_id = %id, error = %e.message,
                "could not stop a deleted user's session");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["alice", "a.b-c_d", "bob@example.com", "7"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Alice", "-a", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
