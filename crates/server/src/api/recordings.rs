//! Recordings of viewings: listed per session, read (metadata and stream) and deleted by the
//! session's owner and admins only. Reading a stream and deleting are audited; the recording's
//! creation is audited when the viewing starts (`crate::recording`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;
use streamspace_proto::api::{Page, PageQuery, Recording};
use streamspace_store::StoredRecording;
use uuid::Uuid;

use super::{ApiPath, ApiQuery, audit, paging};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::policy::{Action, Resource};
use crate::state::AppState;

/// The media type of a recording's stream (the format of `streamspace_proto::recording`).
pub(crate) const MEDIA_TYPE: &str = "application/vnd.streamspace.recording";

#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/recordings",
    operation_id = "recordings_list",
    tag = "recordings",
    summary = "List the recordings of a session's viewings (its owner and admins)",
    params(("id" = uuid::Uuid, Path, description = "the session's id"), streamspace_proto::api::PageQuery),
    responses(
        (status = 200, description = "A page of recordings, newest first", body = streamspace_proto::api::Page<streamspace_proto::api::Recording>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 403, description = "Operators may not read recordings (`forbidden`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<Recording>>, ApiError> {
    let limit = paging::limit(page.limit)?;
    let before = paging::parsed_key::<Uuid>(page.cursor.as_deref())?;
    let session = app
        .store
        .get_session(id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a session"))?;
    actor.may(Action::ManageRecordings, Resource::Session(&session))?;
    let recordings = app
        .store
        .list_recordings(id, before, limit as i64 + 1)
        .await
        .map_err(|e| ApiError::from_store(e, "listing recordings"))?;
    Ok(Json(paging::from_overfetch(recordings, limit, |r| {
        r.id.to_string()
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/recordings/{id}",
    operation_id = "recordings_get",
    tag = "recordings",
    summary = "Show a recording",
    params(("id" = uuid::Uuid, Path, description = "the recording's id")),
    responses(
        (status = 200, description = "The recording", body = streamspace_proto::api::Recording),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such recording", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Recording>, ApiError> {
    Ok(Json(load(&app, &actor, id).await?.recording))
}

#[utoipa::path(
    get,
    path = "/api/v1/recordings/{id}/data",
    operation_id = "recordings_data",
    tag = "recordings",
    summary = "Read a recording's stream (the StreamSpace recording format)",
    params(("id" = uuid::Uuid, Path, description = "the recording's id")),
    responses(
        (status = 200, description = "The recording, `application/vnd.streamspace.recording`", content_type = "application/vnd.streamspace.recording", body = Vec<u8>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such recording", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The viewing is still being recorded (`recording_in_progress`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "No recording store is configured (`recording_unavailable`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn data(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let stored = load(&app, &actor, id).await?;
    if stored.recording.ended_at.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "recording_in_progress",
            "the viewing is still being recorded; its recording is readable once it ends",
        ));
    }
    let storage = storage(&app)?;
    let stream = storage
        .read(&stored.storage_key)
        .await
        .map_err(|e| match e {
            crate::recording::storage::StorageError::NotFound => {
                ApiError::not_found("the recording's stream is missing from the recording store")
            }
            other => {
                tracing::error!(recording_id = %id, error = %other, "reading a recording failed");
                ApiError::internal()
            }
        })?;
    let entry = audit(
        &actor,
        "recording.view",
        id.to_string(),
        json!({ "session_id": stored.recording.session_id }),
    );
    crate::audit::record_event(&app, &entry).await;
    let body = Body::from_stream(stream.map(|r| r.map_err(std::io::Error::other)));
    Ok(([(header::CONTENT_TYPE, MEDIA_TYPE)], body).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/recordings/{id}",
    operation_id = "recordings_delete",
    tag = "recordings",
    summary = "Delete a recording",
    params(("id" = uuid::Uuid, Path, description = "the recording's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such recording", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn remove(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let stored = load(&app, &actor, id).await?;
    let entry = audit(
        &actor,
        "recording.delete",
        id.to_string(),
        json!({ "session_id": stored.recording.session_id }),
    );
    let deleted = app
        .store
        .delete_recording(id, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "deleting a recording"))?;
    if let Some(recorder) = &app.recorder
        && let Err(e) = recorder.storage.delete(&deleted.storage_key).await
    {
        tracing::warn!(recording_id = %id, error = %e,
            "the recording's stream could not be deleted from the recording store");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The recording, if `actor` may read it (else 404, as a missing one).
async fn load(app: &AppState, actor: &Actor, id: Uuid) -> Result<StoredRecording, ApiError> {
    let stored = app
        .store
        .get_recording(id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a recording"))?;
    actor.may(
        Action::ManageRecordings,
        Resource::Recording(&stored.recording),
    )?;
    Ok(stored)
}

fn storage(
    app: &AppState,
) -> Result<&std::sync::Arc<dyn crate::recording::RecordingStorage>, ApiError> {
    app.recorder.as_ref().map(|r| &r.storage).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "recording_unavailable",
            "no recording store is configured on this server",
        )
    })
}
