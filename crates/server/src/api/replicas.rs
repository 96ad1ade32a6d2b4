//! `GET /api/v1/replicas`: the live replicas (503 `redis_unavailable` while Redis is down).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use streamspace_proto::api::{Page, PageQuery};

use super::ApiQuery;
use crate::cluster::ReplicaStatus;
use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/replicas",
    operation_id = "replicas_list",
    tag = "replicas",
    summary = "List the control plane's replicas",
    params(streamspace_proto::api::PageQuery),
    responses(
        (status = 200, description = "A page of replicas", body = streamspace_proto::api::Page<crate::cluster::ReplicaStatus>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "The replica directory (Redis) cannot be read", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<ReplicaStatus>>, ApiError> {
    let held = app.hub.agents().await.len();
    let replicas = app.cluster.replicas(held).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            e.to_string(),
        )
    })?;
    let page = super::paging::of_list(replicas, page.limit, page.cursor.as_deref(), |r| {
        r.id.clone()
    })?;
    Ok(Json(page))
}
