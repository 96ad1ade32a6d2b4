//! `/api/v1/commands`: the command log, filtered by session, agent and status.

use axum::Json;
use axum::extract::State;
use streamspace_proto::api::{Command, CommandFilter};
use uuid::Uuid;

use super::{ApiPath, ApiQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// Largest page the API returns.
const MAX_LIMIT: u32 = 1000;

pub(super) async fn list(
    State(app): State<AppState>,
    ApiQuery(filter): ApiQuery<CommandFilter>,
) -> Result<Json<Vec<Command>>, ApiError> {
    if let Some(limit) = filter.limit
        && !(1..=MAX_LIMIT).contains(&limit)
    {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let commands = app
        .store
        .list_commands(&filter)
        .await
        .map_err(|e| ApiError::from_store(e, "listing commands"))?;
    Ok(Json(commands))
}

pub(super) async fn get(
    State(app): State<AppState>,
    ApiPath(command_id): ApiPath<Uuid>,
) -> Result<Json<Command>, ApiError> {
    let command = app
        .store
        .get_command(command_id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a command"))?;
    Ok(Json(command))
}
