//! `/api/v1/agents`: the agents the control plane knows, removing one, and pinging one.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{Action, Agent, Command, CommandWait, Page, PageQuery};
use streamspace_store::NewCommand;

use super::{ApiPath, ApiQuery, audit};
use crate::auth::Actor;
use crate::cluster::AgentRevoked;
use crate::error::ApiError;
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/agents",
    operation_id = "agents_list",
    tag = "agents",
    summary = "List agents",
    params(streamspace_proto::api::PageQuery),
    responses(
        (status = 200, description = "A page of agents", body = streamspace_proto::api::Page<streamspace_proto::api::Agent>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<Agent>>, ApiError> {
    // Paged by the database (keyset on the id): a control plane may hold ten thousand agents.
    let limit = super::paging::limit(page.limit)?;
    let after = page.cursor.as_deref().map(super::paging::key).transpose()?;
    let agents = app
        .store
        .list_agents(after.as_deref(), limit as i64 + 1)
        .await
        .map_err(|e| ApiError::from_store(e, "listing agents"))?;
    Ok(Json(super::paging::from_overfetch(agents, limit, |a| {
        a.agent_id.clone()
    })))
}

#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}",
    operation_id = "agents_get",
    tag = "agents",
    summary = "Show an agent",
    params(("id" = String, Path, description = "the agent's id")),
    responses(
        (status = 200, description = "The agent", body = streamspace_proto::api::Agent),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such agent", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
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
/// connection on whichever replica holds it.
#[utoipa::path(
    delete,
    path = "/api/v1/agents/{id}",
    operation_id = "agents_remove",
    tag = "agents",
    summary = "Forget an offline agent",
    params(("id" = String, Path, description = "the agent's id")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such agent", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The agent is online or still has sessions", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn remove(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let entry = audit(&actor, "agent.delete", id.clone(), json!({}));
    app.store
        .delete_agent(&id, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "deleting an agent"))?;
    app.agent_revoked(AgentRevoked::Agent(id.clone())).await;
    tracing::info!(agent_id = %id, "agent deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a `ping` for the agent (no session): the agent answers `{"pong": true}` at once.
/// Answers 202 with the command; follow it at `/api/v1/commands/{command_id}`. With
/// `?wait=SECS`, answers 200 with the finished command as soon as the agent has answered, or
/// 202 with the command as it is if the wait runs out first.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/ping",
    operation_id = "agents_ping",
    tag = "agents",
    summary = "Send a ping command to an agent",
    params(("id" = String, Path, description = "the agent's id"), streamspace_proto::api::CommandWait),
    responses(
        (status = 200, description = "The ping command, finished within `wait`", body = streamspace_proto::api::Command),
        (status = 202, description = "The ping command, not finished yet", body = streamspace_proto::api::Command),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such agent", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "The agent is not connected", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn ping(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CommandWait>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    let wait = super::commands::checked_wait(&query)?;
    let command_id = uuid::Uuid::now_v7();
    // Watching before the command exists: its outcome cannot be missed.
    let waiter = wait.map(|_| app.outcomes.watch(command_id));
    let commands = app.commands.clone();
    let command = app
        .create_command(id.clone(), move |send_now| async move {
            commands
                .create(NewCommand {
                    command_id,
                    agent_id: id,
                    session_id: None,
                    action: Action::Ping,
                    payload: json!({}),
                    send_now,
                })
                .await
                .map_err(|e| ApiError::from_batch(e, "creating a ping"))?
                .map_err(|e| ApiError::from_store(e, "creating a ping"))
        })
        .await?;
    let (Some(wait), Some(waiter)) = (wait, waiter) else {
        return Ok((StatusCode::ACCEPTED, Json(command)));
    };
    let command = super::commands::until_finished(&app, waiter, command, wait).await?;
    let status = if command.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(command)))
}
