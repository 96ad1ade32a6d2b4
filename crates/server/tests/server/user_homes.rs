//! User homes through the API with fake agents: a user-home session goes only to an agent
//! that keeps user homes and carries its owner's id, the owner's next one goes where the home
//! is (409 `home_agent_unavailable` naming the agent while it is offline), a second live one is
//! refused (409 `home_in_use`), and deleting the user asks what to do with the home, then
//! sends `delete_user_home` to the agent that holds it.

use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_proto::api::{Action, AgentStatus, SessionState, User};
use streamspace_proto::wire::{DeleteUserHomePayload, StartSessionPayload};
use streamspace_testkit::fake_agent::FakeAgent;

use crate::access::{call, create_session, user_token};
use crate::common::{Backend, TestServer, assert_error, fast_config};

async fn home_agent(s: &TestServer, agent_id: &str) -> anyhow::Result<FakeAgent> {
    let key = s.agent_key(agent_id).await?;
    FakeAgent::connect_with_user_homes(&s.ws_url, &key, agent_id, 10).await
}

#[tokio::test]
async fn a_user_home_places_sessions_and_is_asked_about_on_deletion() -> anyhow::Result<()> {
    let s = Backend::Sqlite.server(fast_config()).await?;
    // a0 would win on name, but predates user homes.
    let _old = s.agent("a0", 10).await?;
    let mut a1 = home_agent(&s, "a1").await?;
    let _a2 = home_agent(&s, "a2").await?;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/templates",
            Some(json!({"name": "desk", "command": ["xterm"], "persistent_home": "user"})),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");
    let alice = user_token(&s, "alice", "user").await?;
    let alice_id = s.get_json::<User>("/api/v1/users/alice").await?.id;

    let first = create_session(&s, &alice, "desk").await?;
    ensure!(
        first.agent_id.as_deref() == Some("a1"),
        "placed on an agent with user homes: {first:?}"
    );
    let start = a1.expect_command().await?;
    let payload: StartSessionPayload = serde_json::from_value(start.payload.clone())?;
    ensure!(
        payload.user_id == Some(alice_id),
        "the start names the owner: {payload:?}"
    );

    let (status, body) = call(
        &s,
        Some(&alice),
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"template": "desk"})),
    )
    .await?;
    ensure!(status == StatusCode::CONFLICT, "{status} {body}");
    assert_error(&body, "home_in_use");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains(&first.id.to_string()), "{body}");

    a1.ack_and_complete(start.command_id, json!({"vnc_address": "127.0.0.1:5901"}))
        .await?;
    s.wait_session_state(first.id, SessionState::Running)
        .await?;
    let (status, body) = call(
        &s,
        Some(&alice),
        Method::DELETE,
        &format!("/api/v1/sessions/{}", first.id),
        None,
    )
    .await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {body}");
    a1.run_next(Action::StopSession).await?;
    s.wait_session_state(first.id, SessionState::Terminated)
        .await?;

    a1.close().await;
    s.wait_agent_status("a1", AgentStatus::Offline).await?;
    let (status, body) = call(
        &s,
        Some(&alice),
        Method::POST,
        "/api/v1/sessions",
        Some(json!({"template": "desk"})),
    )
    .await?;
    ensure!(status == StatusCode::CONFLICT, "{status} {body}");
    assert_error(&body, "home_agent_unavailable");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("\"a1\"") && message.contains("offline"),
        "{body}"
    );

    let (status, body) = s.call(Method::DELETE, "/api/v1/users/alice", None).await?;
    ensure!(status == StatusCode::CONFLICT, "{status} {body}");
    assert_error(&body, "home_choice_required");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    ensure!(message.contains("home=delete"), "names the choice: {body}");

    let mut a1 = home_agent(&s, "a1").await?;
    s.settle(&mut a1).await?;
    let (status, body) = s
        .call(Method::DELETE, "/api/v1/users/alice?home=delete", None)
        .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status} {body}");
    let removal = a1.run_next(Action::DeleteUserHome).await?;
    let payload: DeleteUserHomePayload = serde_json::from_value(removal.payload.clone())?;
    ensure!(payload.user_id == alice_id, "{removal:?}");
    ensure!(removal.session_id.is_none(), "{removal:?}");

    // A user without a home needs no choice.
    user_token(&s, "bob", "user").await?;
    let (status, body) = s.call(Method::DELETE, "/api/v1/users/bob", None).await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status} {body}");
    let (status, body) = s
        .call(Method::DELETE, "/api/v1/users/nobody?home=maybe", None)
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    let _ = first.agent_id.context("placed")?;
    s.stop().await
}
