//! `GET /api/v1/replicas`: the live replicas (503 `redis_unavailable` while Redis is down).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use streamspace_proto::api::{Page, PageQuery};

use super::ApiQuery;
use crate::cluster::ReplicaStatus;
use crate::error::ApiError;
use crate::state::AppState;

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
