//! `/api/v1/commands`: the command log, filtered by session, agent and status.

use axum::Json;
use axum::extract::{Extension, State};
use streamspace_proto::api::{Command, CommandFilter, CommandWait, MAX_COMMAND_WAIT_SECS, Page};
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::{ApiPath, ApiQuery, paging};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::outcomes::{RECHECK, Waiter};
use crate::policy::{Action, Resource};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/commands",
    operation_id = "commands_list",
    tag = "commands",
    summary = "List agent commands",
    params(streamspace_proto::api::CommandFilter),
    responses(
        (status = 200, description = "A page of commands, newest first", body = streamspace_proto::api::Page<streamspace_proto::api::Command>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiQuery(filter): ApiQuery<CommandFilter>,
) -> Result<Json<Page<Command>>, ApiError> {
    let limit = paging::limit(filter.limit)?;
    let before_id = paging::parsed_key::<i64>(filter.cursor.as_deref())?;
    // One more than the page, to know whether another follows.
    let overfetch = CommandFilter {
        limit: Some(limit as u32 + 1),
        ..filter
    };
    let commands = app
        .store
        .list_commands(&overfetch, own_only(&actor), before_id)
        .await
        .map_err(|e| ApiError::from_store(e, "listing commands"))?;
    Ok(Json(paging::from_overfetch(
        commands,
        limit,
        |c: &Command| c.id.to_string(),
    )))
}

/// One command; with `?wait=SECS`, answers once it is `completed` or `failed` (or when the wait
/// ends, with the command as it is then) so clients need not poll.
#[utoipa::path(
    get,
    path = "/api/v1/commands/{command_id}",
    operation_id = "commands_get",
    tag = "commands",
    summary = "Show a command, optionally waiting for it to finish",
    params(("command_id" = uuid::Uuid, Path, description = "the command's id"), streamspace_proto::api::CommandWait),
    responses(
        (status = 200, description = "The command", body = streamspace_proto::api::Command),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such command", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(command_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<CommandWait>,
) -> Result<Json<Command>, ApiError> {
    let Some(wait) = checked_wait(&query)? else {
        let command = read_command(&app, command_id).await?;
        authorize(&app, &actor, &command).await?;
        return Ok(Json(command));
    };
    // Registered before the first read, so an outcome recorded in between is not missed.
    let waiter = app.outcomes.watch(command_id);
    let command = read_command(&app, command_id).await?;
    authorize(&app, &actor, &command).await?;
    Ok(Json(until_finished(&app, waiter, command, wait).await?))
}

/// A user sees only the commands of their own sessions; everyone who may see every session
/// sees every command.
fn own_only(actor: &Actor) -> Option<Uuid> {
    (!actor.allowed(Action::ListAllSessions, Resource::System)).then(|| actor.user_id())
}

/// A command of a session is as visible as its session (404 otherwise); one of no session
/// (a ping) is the operators'.
async fn authorize(app: &AppState, actor: &Actor, command: &Command) -> Result<(), ApiError> {
    match command.session_id {
        Some(session_id) => {
            let session = app.store.get_session(session_id).await;
            match session {
                Ok(session) if actor.allowed(Action::ReadSession, Resource::Session(&session)) => {
                    Ok(())
                }
                Ok(_) | Err(streamspace_store::StoreError::NotFound { .. }) => {
                    Err(ApiError::not_found("command not found"))
                }
                Err(e) => Err(ApiError::from_store(e, "reading a command's session")),
            }
        }
        None if actor.allowed(Action::ManageAgents, Resource::System) => Ok(()),
        None => Err(ApiError::not_found("command not found")),
    }
}

async fn read_command(app: &AppState, command_id: Uuid) -> Result<Command, ApiError> {
    app.store
        .get_command(command_id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a command"))
}

/// The `wait` of a query, checked: `None` if the caller does not want to wait.
pub(super) fn checked_wait(query: &CommandWait) -> Result<Option<Duration>, ApiError> {
    match query.wait {
        None => Ok(None),
        Some(wait) if wait > 0.0 && wait <= MAX_COMMAND_WAIT_SECS => {
            Ok(Some(Duration::from_secs_f64(wait)))
        }
        Some(_) => Err(ApiError::bad_request(format!(
            "wait must be more than 0 and at most {MAX_COMMAND_WAIT_SECS} seconds"
        ))),
    }
}

/// Follows `command` (as last read) until it finishes or `wait` runs out; `waiter` must have
/// been registered before that read. Re-reads the database every [`RECHECK`] and at the end.
pub(super) async fn until_finished(
    app: &AppState,
    mut waiter: Waiter,
    mut command: Command,
    wait: Duration,
) -> Result<Command, ApiError> {
    let deadline = Instant::now() + wait;
    let command_id = command.command_id;
    while !command.status.is_terminal() && Instant::now() < deadline {
        let recheck = (Instant::now() + RECHECK).min(deadline);
        tokio::select! {
            finished = waiter.finished() => {
                crate::metrics::command_wait("announced");
                return Ok(finished);
            }
            _ = tokio::time::sleep_until(recheck) => {
                command = read_command(app, command_id).await?;
            }
            _ = app.shutdown.cancelled() => break,
        }
    }
    crate::metrics::command_wait(if command.status.is_terminal() {
        "read"
    } else {
        "timeout"
    });
    Ok(command)
}
