//! `/api/v1/templates`: what sessions can run. Templates carry the commands agents run, so only
//! operators and admins change them; users see (and launch) those their groups may use.
//!
//! `PATCH` changes some fields of a template (see [`UpdateTemplate`]); the result is checked
//! exactly as a new template is, inside the store's transaction, so two concurrent changes
//! cannot combine into a template neither would have been allowed to make.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{CreateTemplate, Page, PageQuery, Template, UpdateTemplate};

use super::{ApiJson, ApiPath, ApiQuery, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::policy::{Action, Resource};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/api/v1/templates",
    operation_id = "templates_list",
    tag = "templates",
    summary = "List the templates the caller may launch",
    params(streamspace_proto::api::PageQuery),
    responses(
        (status = 200, description = "A page of templates", body = streamspace_proto::api::Page<streamspace_proto::api::Template>),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<Template>>, ApiError> {
    let templates = app
        .store
        .list_templates()
        .await
        .map_err(|e| ApiError::from_store(e, "listing templates"))?;
    let visible = templates
        .into_iter()
        .filter(|t| actor.allowed(Action::ReadTemplate, Resource::Template(t)))
        .collect();
    let page = super::paging::of_list(visible, page.limit, page.cursor.as_deref(), |t| {
        t.name.clone()
    })?;
    Ok(Json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/templates/{name}",
    operation_id = "templates_get",
    tag = "templates",
    summary = "Show a template",
    params(("name" = String, Path, description = "the template's name")),
    responses(
        (status = 200, description = "The template", body = streamspace_proto::api::Template),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such template", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Template>, ApiError> {
    let template = app
        .store
        .get_template(&name)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a template"))?;
    actor.may(Action::ReadTemplate, Resource::Template(&template))?;
    Ok(Json(template))
}

#[utoipa::path(
    post,
    path = "/api/v1/templates",
    operation_id = "templates_create",
    tag = "templates",
    summary = "Create a template",
    request_body = streamspace_proto::api::CreateTemplate,
    responses(
        (status = 201, description = "The new template", body = streamspace_proto::api::Template),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The name is taken", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn create(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<CreateTemplate>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    actor.may(Action::ManageTemplates, Resource::System)?;
    validate(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let entry = audit(
        &actor,
        "template.create",
        body.name.clone(),
        json!({ "command": body.command, "allowed_groups": body.allowed_groups }),
    );
    let template = app
        .store
        .create_template(&body, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "creating a template"))?;
    Ok((StatusCode::CREATED, Json(template)))
}

#[utoipa::path(
    patch,
    path = "/api/v1/templates/{name}",
    operation_id = "templates_update",
    tag = "templates",
    summary = "Change a template (merge patch)",
    params(("name" = String, Path, description = "the template's name")),
    request_body = streamspace_proto::api::UpdateTemplate,
    responses(
        (status = 200, description = "The template as it is now", body = streamspace_proto::api::Template),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such template", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn update(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateTemplate>,
) -> Result<Json<Template>, ApiError> {
    actor.may(Action::ManageTemplates, Resource::System)?;
    let mut detail = json!({ "fields": body.fields() });
    if let Some(command) = &body.command {
        detail["command"] = json!(command.clone().unwrap_or_default());
    }
    if let Some(groups) = &body.allowed_groups {
        detail["allowed_groups"] = json!(groups.clone().unwrap_or_default());
    }
    let entry = audit(&actor, "template.update", name.clone(), detail);
    let check = |t: &CreateTemplate| validate(t).map_err(|e| e.to_string());
    let template = app
        .store
        .update_template(&name, &body, &check, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "changing a template"))?;
    Ok(Json(template))
}

#[utoipa::path(
    delete,
    path = "/api/v1/templates/{name}",
    operation_id = "templates_remove",
    tag = "templates",
    summary = "Delete a template",
    params(("name" = String, Path, description = "the template's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A query or path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such template", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn remove(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    actor.may(Action::ManageTemplates, Resource::System)?;
    let entry = audit(&actor, "template.delete", name.clone(), json!({}));
    app.store
        .delete_template(&name, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "deleting a template"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A template name is a DNS label (it may end up in names of containers and Kubernetes objects);
/// the command names a program. A template needs a command (process runtime) or an image
/// (container runtimes), or both; which one a session needs is checked by the agent that runs it.
fn validate(t: &CreateTemplate) -> Result<(), InvalidTemplate> {
    if !is_dns_label(&t.name) {
        return Err(InvalidTemplate::Name(t.name.clone()));
    }
    match (t.command.first(), &t.image) {
        (Some(program), _) if !program.trim().is_empty() => {}
        (None, Some(_)) => {}
        (Some(_), _) => return Err(InvalidTemplate::BlankProgram),
        (None, None) => return Err(InvalidTemplate::NothingToRun),
    }
    if let Some(bad) = t.env.keys().find(|k| !is_env_name(k)) {
        return Err(InvalidTemplate::EnvName(bad.clone()));
    }
    super::template_limits::validate(t)?;
    crate::rules::validate(&t.rules)?;
    Ok(super::template_fields::validate(t)?)
}

/// Why a template is refused (400 `bad_request`, with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum InvalidTemplate {
    #[error(
        "template name {0:?} must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
    )]
    Name(String),
    #[error("command must name a program to run")]
    BlankProgram,
    #[error(
        "a template needs a command (process runtime) or an image (docker and kubernetes runtimes)"
    )]
    NothingToRun,
    #[error("environment variable name {0:?} is not valid")]
    EnvName(String),
    #[error(transparent)]
    Field(#[from] super::template_fields::InvalidField),
    #[error(transparent)]
    Limit(#[from] super::template_limits::InvalidLimit),
    #[error(transparent)]
    Rules(#[from] crate::rules::InvalidRules),
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn t(name: &str, command: &[&str]) -> CreateTemplate {
        CreateTemplate {
            name: name.into(),
            description: String::new(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            ..CreateTemplate::default()
        }
    }

    #[test]
    fn names_are_dns_labels_and_commands_non_empty() {
        assert!(validate(&t("xterm", &["xterm"])).is_ok());
        assert!(validate(&t("fire-fox2", &["firefox", "--kiosk"])).is_ok());
        for bad in ["", "Xterm", "-x", "x-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(validate(&t(bad, &["x"])).is_err(), "{bad:?} accepted");
        }
        assert!(validate(&t("x", &[])).is_err());
        let image_only = CreateTemplate {
            image: Some("localhost/desktop:1".into()),
            ..t("x", &[])
        };
        assert!(validate(&image_only).is_ok());
        assert!(validate(&t("x", &[" "])).is_err());
        let mut env = t("x", &["x"]);
        env.env.insert("1BAD".into(), "v".into());
        assert!(validate(&env).is_err());
    }

    #[test]
    fn messages_are_the_ones_api_clients_know() {
        let err = |t: CreateTemplate| validate(&t).expect_err("refused").to_string();
        assert_eq!(
            err(t("Bad", &["x"])),
            "template name \"Bad\" must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
        );
        assert_eq!(err(t("x", &[" "])), "command must name a program to run");
        assert_eq!(
            err(t("x", &[])),
            "a template needs a command (process runtime) or an image (docker and kubernetes runtimes)"
        );
        let mut env = t("x", &["x"]);
        env.env.insert("1BAD".into(), "v".into());
        assert_eq!(err(env), "environment variable name \"1BAD\" is not valid");
        let mut port = t("x", &["x"]);
        port.ports.vnc = 0;
        assert_eq!(
            err(port),
            "ports.vnc must be a port number between 1 and 65535"
        );
    }
}
