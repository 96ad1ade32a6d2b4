//! Template size limits over HTTP, and what happens to a template stored before them: a
//! description far over its limit is refused with a 400 naming the field and nothing is stored;
//! a stored template too big for the agent protocol fails its session without ever reaching, or
//! disconnecting, the agent. Both run on SQLite and PostgreSQL.

use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_proto::api::{
    Action, AgentStatus, CommandStatus, CreateTemplate, SessionState, Template,
};
use streamspace_proto::wire::MAX_MESSAGE_BYTES;

use crate::common::{Backend, assert_error, fast_config};
use crate::on_both_backends;

/// The description of the defect's report: 70 350 bytes.
const HUGE: usize = 70_350;

async fn a_70_kb_description_is_refused_and_nothing_is_stored(
    backend: Backend,
) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let body = json!({ "name": "huge", "description": "x".repeat(HUGE), "command": ["xterm"] });
    let (status, answer) = s
        .call(Method::POST, "/api/v1/templates", Some(body))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "bad_request");
    assert_eq!(
        answer["error"]["message"],
        json!(format!(
            "description must be at most 1024 bytes, got {HUGE}"
        )),
        "the message names the field and the limit"
    );
    let (status, answer) = s.call(Method::GET, "/api/v1/templates/huge", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "stored anyway: {answer}");
    let templates: Vec<Template> = s.list("/api/v1/templates").await?;
    assert!(
        templates.iter().all(|t| t.name != "huge"),
        "listed anyway: {templates:?}"
    );
    s.stop().await
}

async fn an_oversized_stored_template_fails_its_session_and_the_agent_stays(
    backend: Backend,
) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    // As a template created before the API limited descriptions would be stored.
    s.store
        .create_template(
            &CreateTemplate {
                name: "huge".into(),
                description: "x".repeat(HUGE),
                command: vec!["xterm".into()],
                ..CreateTemplate::default()
            },
            &streamspace_store::AuditEntry::system(
                "template.create",
                "huge",
                serde_json::json!({}),
            ),
        )
        .await?;
    let mut agent = s.agent("a1", 2).await?;
    s.settle(&mut agent).await?;

    let session = s.create_session("huge").await?;
    let failed = s
        .wait_session_state(session.id, SessionState::Failed)
        .await?;
    let commands: Vec<streamspace_proto::api::Command> = s
        .list(&format!("/api/v1/commands?session_id={}", session.id))
        .await?;
    let [start] = commands.as_slice() else {
        anyhow::bail!("expected the one start command: {commands:?}");
    };
    let start = s
        .wait_command_status(start.command_id, CommandStatus::Failed)
        .await?;
    let error = start.error_message.unwrap_or_default();
    assert!(
        error.contains(&format!(
            "over the agent protocol's limit of {MAX_MESSAGE_BYTES} bytes"
        )) && error.contains("template"),
        "the command does not say why it failed: {error:?}"
    );
    assert!(
        failed.error_message.is_some_and(|m| m.contains("limit")),
        "the session does not say why it failed"
    );

    // Still connected and answering: the next command it gets is this ping, not the start.
    let ping = s.api.ping_agent("a1").await?;
    let answered = agent.run_next(Action::Ping).await?;
    assert_eq!(answered.command_id, ping.command_id);
    s.wait_command_status(ping.command_id, CommandStatus::Completed)
        .await?;
    assert_eq!(agent.deliveries(start.command_id), 0, "the start was sent");
    assert_eq!(s.agent_info("a1").await?.status, AgentStatus::Online);
    s.stop().await
}

on_both_backends!(
    a_70_kb_description_is_refused_and_nothing_is_stored,
    an_oversized_stored_template_fails_its_session_and_the_agent_stays,
);
