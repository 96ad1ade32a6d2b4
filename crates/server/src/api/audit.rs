//! `GET /api/v1/audit`: the audit log, newest first, a page at a time. Admins read all of it
//! (filtered by actor, action, target and time); everyone else reads only their own entries.

use axum::Json;
use axum::extract::{Extension, State};
use streamspace_proto::api::{AuditFilter, AuditRecord, Page};
use streamspace_store::{AuditQuery, StoreError};

use super::ApiQuery;
use crate::auth::Actor;
use crate::error::ApiError;
use crate::policy::{Action, Resource};
use crate::state::AppState;

/// Page size when the query names none, and the largest one allowed.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "audit_list",
    tag = "audit",
    summary = "Read the audit log",
    params(streamspace_proto::api::AuditFilter),
    responses(
        (status = 200, description = "A page of audit entries, newest first", body = streamspace_proto::api::Page<streamspace_proto::api::AuditRecord>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> Result<Json<Page<AuditRecord>>, ApiError> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let before_id = match filter.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
            ApiError::bad_request("cursor is not one this server gave out (use next_cursor)")
        })?),
    };
    let actor_id = if actor.allowed(Action::ReadAllAudit, Resource::System) {
        match filter.actor.as_deref() {
            None => None,
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
        }
    } else {
        Some(actor.user_id())
    };
    let query = AuditQuery {
        actor_id,
        action: filter.action,
        target: filter.target,
        since: filter.since,
        until: filter.until,
        before_id,
        limit: i64::from(limit) + 1,
    };
    let mut items = app
        .store
        .list_audit(&query)
        .await
        .map_err(|e| ApiError::from_store(e, "reading the audit log"))?;
    // One more than the page was read: if it came, there is a next page.
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| last.id.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}
