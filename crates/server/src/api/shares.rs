//! `/api/v1/sessions/{id}/shares` and `/api/v1/sessions/{id}/viewers`: the owner of a session
//! (or an operator) makes share links, lists and revokes them, and sees and disconnects who
//! watches. Using a link (`POST /api/v1/shares/{share_id}/connect`) lives with the other
//! viewer endpoints in `crate::tunnel::viewer`.
//!
//! A watcher's stream sits on whichever replica the load balancer gave their browser, so the
//! viewers are listed and disconnected on every replica: this one's from its own streams, the
//! others' by asking them through the cluster (`crate::cluster::Cluster::viewers_elsewhere`,
//! answered by [`internal_viewers`] and [`internal_close`] there). Revoking a link closes its
//! viewers here at once and announces it to the other replicas, which close theirs on hearing
//! it; each replica's check of its viewers' links (every sweep interval, see `crate::streams`)
//! makes up for an announcement lost while Redis is away.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use streamspace_proto::api::{CreateShare, MAX_SHARE_SECS, Page, Session, Share, Viewer};
use streamspace_proto::tunnel::close_code;
use streamspace_store::{NewShare, StoreError};
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery, audit, paging};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::policy::{Action, Resource};
use crate::state::AppState;

/// A link's lifetime when the request names none: an hour.
const DEFAULT_SHARE_SECS: u64 = 3600;
/// Most users plus groups one link may name.
const MAX_NAMES: usize = 100;

/// `?limit=&cursor=` of the listings here.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Items per page.
    limit: Option<u32>,
    /// Where the previous page ended.
    cursor: Option<String>,
}

/// The session `id`, if the actor may share it.
async fn shareable(app: &AppState, actor: &Actor, id: Uuid) -> Result<Session, ApiError> {
    let session = app
        .store
        .get_session(id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a session"))?;
    actor.may(Action::ShareSession, Resource::Session(&session))?;
    Ok(session)
}

#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/shares",
    operation_id = "shares_create",
    tag = "sessions",
    summary = "Create a share link for a session (view-only or with control)",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    request_body = streamspace_proto::api::CreateShare,
    responses(
        (status = 201, description = "The link; open `link` in the web UI", body = streamspace_proto::api::Share),
        (status = 400, description = "The expiry or a name is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session, user or group", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session has ended (`session_ended`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CreateShare>,
) -> Result<(StatusCode, Json<Share>), ApiError> {
    let session = shareable(&app, &actor, id).await?;
    if session.state.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "session_ended",
            format!("session {id} has ended ({})", session.state),
        ));
    }
    let expires_in_secs = lifetime(&body)?;
    check_names(&app, &body).await?;
    let new = NewShare {
        id: Uuid::now_v7(),
        session_id: id,
        created_by: actor.user_id(),
        mode: body.mode,
        expires_in_secs,
        users: body.users.clone(),
        groups: body.groups.clone(),
    };
    let entry = audit(
        &actor,
        "session.share",
        id.to_string(),
        json!({
            "share_id": new.id,
            "mode": new.mode,
            "expires_in_secs": expires_in_secs,
            "users": new.users,
            "groups": new.groups,
        }),
    );
    let share = app
        .store
        .create_share(&new, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "creating a share link"))?;
    Ok((StatusCode::CREATED, Json(share)))
}

/// Seconds from now until the link asked for expires, checked.
fn lifetime(body: &CreateShare) -> Result<u64, ApiError> {
    let secs = match (body.expires_in_secs, body.expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give expires_in_secs or expires_at, not both",
            ));
        }
        (Some(secs), None) => secs,
        (None, Some(at)) => {
            let ms = (at - Utc::now()).num_milliseconds();
            if ms <= 0 {
                return Err(ApiError::bad_request("expires_at is in the past"));
            }
            u64::try_from(ms).unwrap_or(u64::MAX).div_ceil(1000)
        }
        (None, None) => DEFAULT_SHARE_SECS,
    };
    if !(1..=MAX_SHARE_SECS).contains(&secs) {
        return Err(ApiError::bad_request(format!(
            "a share link lives between 1 s and {MAX_SHARE_SECS} s (a week)"
        )));
    }
    Ok(secs)
}

/// The users and groups a link names must exist (a typo would silently lock everyone out).
async fn check_names(app: &AppState, body: &CreateShare) -> Result<(), ApiError> {
    if body.users.len() + body.groups.len() > MAX_NAMES {
        return Err(ApiError::bad_request(format!(
            "a share link names at most {MAX_NAMES} users and groups"
        )));
    }
    for user in &body.users {
        match app.store.get_user(user).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::not_found(format!("no user {user:?}")));
            }
            Err(e) => return Err(ApiError::from_store(e, "reading a user")),
        }
    }
    for group in &body.groups {
        match app.store.get_group(group).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::not_found(format!("no group {group:?}")));
            }
            Err(e) => return Err(ApiError::from_store(e, "reading a group")),
        }
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/shares",
    operation_id = "shares_list",
    tag = "sessions",
    summary = "List a session's share links (revoked and expired ones too)",
    params(("id" = uuid::Uuid, Path, description = "the session's id"), ListQuery),
    responses(
        (status = 200, description = "The links, oldest first", body = streamspace_proto::api::Page<streamspace_proto::api::Share>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Page<Share>>, ApiError> {
    shareable(&app, &actor, id).await?;
    let shares = app
        .store
        .list_shares(id)
        .await
        .map_err(|e| ApiError::from_store(e, "listing share links"))?;
    let page = paging::of_list(shares, query.limit, query.cursor.as_deref(), |s| {
        s.id.to_string()
    })?;
    Ok(Json(page))
}

#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}/shares/{share_id}",
    operation_id = "shares_revoke",
    tag = "sessions",
    summary = "Revoke a share link and close its viewers",
    params(
        ("id" = uuid::Uuid, Path, description = "the session's id"),
        ("share_id" = uuid::Uuid, Path, description = "the share link's id"),
    ),
    responses(
        (status = 200, description = "The revoked link", body = streamspace_proto::api::Share),
        (status = 400, description = "A path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session or link", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn revoke(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath((id, share_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Share>, ApiError> {
    shareable(&app, &actor, id).await?;
    let share = app
        .store
        .get_share(share_id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a share link"))?;
    if share.session_id != id {
        return Err(ApiError::not_found("share link not found"));
    }
    let entry = audit(
        &actor,
        "session.unshare",
        id.to_string(),
        json!({ "share_id": share_id }),
    );
    let share = app
        .store
        .revoke_share(share_id, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "revoking a share link"))?;
    let reason = crate::streams::SHARE_REVOKED;
    let closed = app
        .tunnels
        .close_share(share_id, close_code::POLICY, reason);
    app.cluster.announce_share_revoked(share_id, reason).await;
    tracing::info!(session_id = %id, %share_id, viewers_here = closed, "share link revoked");
    Ok(Json(share))
}

#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/viewers",
    operation_id = "viewers_list",
    tag = "sessions",
    summary = "Who watches a session (on every replica)",
    params(("id" = uuid::Uuid, Path, description = "the session's id"), ListQuery),
    responses(
        (status = 200, description = "The viewers, oldest stream first", body = streamspace_proto::api::Page<streamspace_proto::api::Viewer>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn viewers(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Page<Viewer>>, ApiError> {
    shareable(&app, &actor, id).await?;
    let mut viewers = viewers_here(&app, id).await?;
    viewers.extend(app.cluster.viewers_elsewhere(id).await);
    // Stream ids are UUIDv7: by id is oldest first, across replicas too.
    viewers.sort_by_key(|v| v.id);
    viewers.dedup_by_key(|v| v.id);
    let page = paging::of_list(viewers, query.limit, query.cursor.as_deref(), |v| {
        v.id.to_string()
    })?;
    Ok(Json(page))
}

/// The viewers of session `id` this replica carries.
async fn viewers_here(app: &AppState, id: Uuid) -> Result<Vec<Viewer>, ApiError> {
    let mut viewers = Vec::new();
    for stream in app.tunnels.streams_of(id) {
        let user = match app.store.get_user_by_id(stream.watcher.user_id).await {
            Ok(record) => record.user.username,
            Err(StoreError::NotFound { .. }) => stream.watcher.user_id.to_string(),
            Err(e) => return Err(ApiError::from_store(e, "reading a viewer's user")),
        };
        viewers.push(Viewer {
            id: stream.tunnel_id,
            user,
            mode: stream.watcher.mode,
            share_id: stream.watcher.share_id,
            since: stream.watcher.since,
            replica: app.config.replica_id.clone(),
        });
    }
    Ok(viewers)
}

/// `GET /internal/v1/sessions/{id}/viewers`: another replica lists a session's viewers, and
/// asks this one for those it carries.
pub(crate) async fn internal_viewers(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> Response {
    if !crate::cluster::verify(
        &app.keys.replicas,
        &headers,
        crate::cluster::VIEWERS_PROOF,
        &id.to_string(),
    ) {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    match viewers_here(&app, id).await {
        Ok(viewers) => Json(viewers).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /internal/v1/viewers/close`: another replica disconnects a viewer, which may be one
/// this replica carries (204) or not (404). The replica that asked, whose API was called,
/// audits it.
pub(crate) async fn internal_close(
    State(app): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<crate::cluster::CloseViewer>,
) -> Response {
    let proven = crate::cluster::verify(
        &app.keys.replicas,
        &headers,
        crate::cluster::CLOSE_VIEWER_PROOF,
        &body.viewer_id.to_string(),
    );
    if !proven {
        return ApiError::unauthorized("not a replica of this control plane").into_response();
    }
    if app.tunnels.close_stream(
        body.session_id,
        body.viewer_id,
        close_code::POLICY,
        &body.reason,
    ) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found("viewer not found").into_response()
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}/viewers/{viewer_id}",
    operation_id = "viewers_disconnect",
    tag = "sessions",
    summary = "Disconnect a viewer of a session",
    params(
        ("id" = uuid::Uuid, Path, description = "the session's id"),
        ("viewer_id" = uuid::Uuid, Path, description = "the viewer's id, from the viewers list"),
    ),
    responses(
        (status = 204, description = "The viewer is being disconnected"),
        (status = 400, description = "A path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session, or no such viewer on any replica", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn disconnect(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath((id, viewer_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    shareable(&app, &actor, id).await?;
    let reason = format!("disconnected by {}", actor.principal.username);
    let closed = app
        .tunnels
        .close_stream(id, viewer_id, close_code::POLICY, &reason)
        || app
            .cluster
            .close_viewer_elsewhere(id, viewer_id, &reason)
            .await;
    if !closed {
        return Err(ApiError::not_found("viewer not found"));
    }
    let entry = audit(
        &actor,
        "session.disconnect_viewer",
        id.to_string(),
        json!({ "viewer_id": viewer_id }),
    );
    crate::audit::record_event(&app, &entry).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use streamspace_proto::api::ShareMode;

    use super::*;

    fn body(expires_in_secs: Option<u64>, at: Option<i64>) -> CreateShare {
        CreateShare {
            mode: ShareMode::ViewOnly,
            expires_in_secs,
            expires_at: at.map(|secs| Utc::now() + TimeDelta::seconds(secs)),
            users: vec![],
            groups: vec![],
        }
    }

    #[test]
    fn a_link_lives_an_hour_unless_told_and_never_past_a_week() {
        assert_eq!(lifetime(&body(None, None)).ok(), Some(3600));
        assert_eq!(lifetime(&body(Some(60), None)).ok(), Some(60));
        let at = lifetime(&body(None, Some(600))).unwrap_or_default();
        assert!((599..=601).contains(&at), "{at}");
        for bad in [
            body(Some(0), None),
            body(Some(MAX_SHARE_SECS + 1), None),
            body(None, Some(-5)),
            body(Some(60), Some(60)),
        ] {
            assert!(lifetime(&bad).is_err(), "{bad:?}");
        }
    }
}
