//! `/api/v1/agents`: the agents the control plane knows, removing one, and pinging one.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{Action, Agent, Command};
use streamspace_proto::wire::close_code;
use streamspace_store::NewCommand;

use super::{ApiPath, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::state::AppState;

pub(super) async fn list(State(app): State<AppState>) -> Result<Json<Vec<Agent>>, ApiError> {
    let agents = app
        .store
        .list_agents()
        .await
        .map_err(|e| ApiError::from_store(e, "listing agents"))?;
    Ok(Json(agents))
}

pub(super) async fn get(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Agent>, ApiError> {
    let agent = app
        .store
        .get_agent(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading an agent"))?;
    Ok(Json(agent))
}

/// Deletes the agent and revokes its keys (refused while it has live sessions), then closes its
/// connection if this replica holds it.
pub(super) async fn remove(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    app.store
        .delete_agent(&id)
        .await
        .map_err(|e| ApiError::from_store(e, "deleting an agent"))?;
    app.hub
        .close_agent(&id, close_code::POLICY, "agent deleted")
        .await;
    tracing::info!(agent_id = %id, "agent deleted");
    audit(&app, &actor, "agent.delete", id, json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a `ping` for the agent (no session): the agent answers `{"pong": true}` at once.
/// Answers 202 with the command; follow it at `/api/v1/commands/{command_id}`.
pub(super) async fn ping(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    let command = app
        .store
        .create_command(&NewCommand {
            command_id: uuid::Uuid::now_v7(),
            agent_id: id,
            session_id: None,
            action: Action::Ping,
            payload: json!({}),
        })
        .await
        .map_err(|e| ApiError::from_store(e, "creating a ping"))?;
    app.route_to(&command.agent_id).await;
    Ok((StatusCode::ACCEPTED, Json(command)))
}
