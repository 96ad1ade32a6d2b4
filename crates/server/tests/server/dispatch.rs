//! Commands from the API to agents and back: session state following results, forward-only
//! status, offline delivery, resends, stuck commands, reconnects, liveness, ownership, shutdown.
//! The key flows run on SQLite and PostgreSQL.

use std::time::Duration;

use anyhow::Context;

use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_proto::api::{Action, AgentStatus, CommandStatus, SessionState};
use streamspace_proto::wire::{AgentMessage, Register, ServerMessage, SessionStatus};
use streamspace_server::ServerConfig;

use crate::common::fake_agent::{self, register_message};
use crate::common::{Backend, FakeAgent, assert_error, fast_config};
use crate::on_both_backends;

async fn session_state_follows_command_results(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let mut agent = s.agent("a1", 2).await?;
    s.settle(&mut agent).await?;
    let session = s.create_session("xterm").await?;
    assert_eq!(session.state, SessionState::Pending);

    let start = agent.run_next(Action::StartSession).await?;
    assert_eq!(start.attempt, 1);
    assert_eq!(start.session_id, Some(session.id));
    assert_eq!(
        start.payload["template"]["command"],
        json!(["xterm"]),
        "start payload carries the template"
    );
    let running = s
        .wait_session_state(session.id, SessionState::Running)
        .await?;
    assert_eq!(running.vnc_address.as_deref(), Some("127.0.0.1:5901"));
    s.wait_command_status(start.command_id, CommandStatus::Completed)
        .await?;

    let wake_path = format!("/api/v1/sessions/{}/wake", session.id);
    let (status, body) = s.call(Method::POST, &wake_path, None).await?;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "wake only from hibernated: {body}"
    );
    assert_error(&body, "conflict");

    let hibernate_path = format!("/api/v1/sessions/{}/hibernate", session.id);
    let (status, body) = s.call(Method::POST, &hibernate_path, None).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    agent.run_next(Action::HibernateSession).await?;
    s.wait_session_state(session.id, SessionState::Hibernated)
        .await?;

    let (status, _) = s.call(Method::POST, &hibernate_path, None).await?;
    assert_eq!(status, StatusCode::CONFLICT, "hibernate only from running");

    let (status, _) = s.call(Method::POST, &wake_path, None).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    agent.run_next(Action::WakeSession).await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;

    let (status, body) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{}", session.id),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body["id"],
        json!(session.id),
        "DELETE answers with the session"
    );
    let stop = agent.run_next(Action::StopSession).await?;
    s.wait_session_state(session.id, SessionState::Terminated)
        .await?;
    s.wait_command_status(stop.command_id, CommandStatus::Completed)
        .await?;
    // Answered at once, each command was sent once: no resend.
    s.assert_no_repeats(&mut agent).await?;
    s.stop().await
}

async fn failed_start_fails_the_session(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let mut agent = s.agent("a1", 2).await?;
    s.settle(&mut agent).await?;
    let session = s.create_session("xterm").await?;
    let start = agent.expect_command().await?;
    agent
        .send(&AgentMessage::Ack {
            command_id: start.command_id,
        })
        .await?;
    agent
        .send(&AgentMessage::Failed {
            command_id: start.command_id,
            error: "xterm: not found".into(),
        })
        .await?;
    let failed = s
        .wait_session_state(session.id, SessionState::Failed)
        .await?;
    assert!(
        failed.error_message.is_some(),
        "the session says why it failed"
    );
    let command = s
        .wait_command_status(start.command_id, CommandStatus::Failed)
        .await?;
    assert_eq!(command.error_message.as_deref(), Some("xterm: not found"));
    s.assert_no_repeats(&mut agent).await?;
    s.stop().await
}

async fn late_ack_never_reopens_a_finished_command(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let mut agent = s.agent("a1", 2).await?;
    s.settle(&mut agent).await?;
    let session = s.create_session("xterm").await?;
    let start = agent.expect_command().await?;
    let id = start.command_id;
    agent
        .send(&AgentMessage::Complete {
            command_id: id,
            result: json!({ "vnc_address": "127.0.0.1:5901" }),
        })
        .await?;
    s.wait_command_status(id, CommandStatus::Completed).await?;
    // Late and repeated reports; a later command on the same connection (messages are handled
    // in order) shows they were processed.
    agent.send(&AgentMessage::Ack { command_id: id }).await?;
    agent
        .send(&AgentMessage::Failed {
            command_id: id,
            error: "late".into(),
        })
        .await?;
    let hibernate = format!("/api/v1/sessions/{}/hibernate", session.id);
    let (status, _) = s.call(Method::POST, &hibernate, None).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    agent.run_next(Action::HibernateSession).await?;
    let session_after = s
        .wait_session_state(session.id, SessionState::Hibernated)
        .await?;
    let command = s.command(id).await?;
    assert_eq!(
        command.status,
        CommandStatus::Completed,
        "a late ack/failed reopened it"
    );
    assert_eq!(command.error_message, None);
    assert_eq!(
        command.result,
        Some(json!({ "vnc_address": "127.0.0.1:5901" }))
    );
    assert_eq!(session_after.error_message, None);
    s.assert_no_repeats(&mut agent).await?;
    s.stop().await
}

/// The next receipt `agent` gets, skipping resent commands.
async fn receipt(agent: &mut FakeAgent) -> anyhow::Result<uuid::Uuid> {
    loop {
        match agent.recv().await? {
            ServerMessage::ResultRecorded { command_id } => return Ok(command_id),
            ServerMessage::Command(_) => {}
            other => anyhow::bail!("expected result_recorded, got {other:?}"),
        }
    }
}

/// An agent that asks for receipts gets one for every result the database holds: a new one, a
/// repeat (which changes nothing, even with another outcome), one for an unknown command. An
/// agent that does not ask (an older agent) gets none.
async fn recorded_results_are_confirmed_and_repeats_change_nothing(
    backend: Backend,
) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let key = s.agent_key("a1").await?;
    let mut ws = match fake_agent::open(&s.ws_url, &key, None).await? {
        Ok(ws) => ws,
        Err(refused) => anyhow::bail!("refused: {refused:?}"),
    };
    let AgentMessage::Register(register) = register_message("a1", 2, vec![]) else {
        anyhow::bail!("register_message made no register");
    };
    let register = AgentMessage::Register(Register {
        result_receipts: true,
        ..register
    });
    fake_agent::handshake(&mut ws, &register, Duration::from_secs(10)).await?;
    let mut agent = FakeAgent::raw("a1", ws);

    let session = s.create_session("xterm").await?;
    let start = agent.expect_command().await?;
    let id = start.command_id;
    agent
        .ack_and_complete(id, json!({ "vnc_address": "127.0.0.1:5901" }))
        .await?;
    assert_eq!(receipt(&mut agent).await?, id, "the result is confirmed");
    let recorded = s.wait_command_status(id, CommandStatus::Completed).await?;

    for repeat in [
        AgentMessage::Complete {
            command_id: id,
            result: json!({ "vnc_address": "127.0.0.1:5999" }),
        },
        AgentMessage::Failed {
            command_id: id,
            error: "late".into(),
        },
    ] {
        agent.send(&repeat).await?;
        assert_eq!(receipt(&mut agent).await?, id, "a repeat is confirmed");
    }
    let unknown = uuid::Uuid::now_v7();
    agent
        .send(&AgentMessage::Complete {
            command_id: unknown,
            result: json!({}),
        })
        .await?;
    assert_eq!(receipt(&mut agent).await?, unknown);
    let after = s.command(id).await?;
    assert_eq!(after.status, CommandStatus::Completed);
    assert_eq!(after.result, recorded.result, "a repeat changed the result");
    assert_eq!(after.completed_at, recorded.completed_at);
    assert_eq!(after.error_message, None);
    let session = s
        .wait_session_state(session.id, SessionState::Running)
        .await?;
    assert_eq!(session.vnc_address.as_deref(), Some("127.0.0.1:5901"));

    let mut old = s.agent("a2", 0).await?;
    let ping = s.api.ping_agent("a2").await?;
    old.run_next(Action::Ping).await?;
    s.wait_command_status(ping.command_id, CommandStatus::Completed)
        .await?;
    // Anything queued for it after the result arrives before the next command, and the
    // finished ping is not sent again: the pass that follows a registration resends what
    // earlier connections may have lost, not what this one was just sent.
    let next = s.api.ping_agent("a2").await?;
    let mut repeats = 0;
    loop {
        match old.recv().await? {
            ServerMessage::Command(c) if c.command_id == ping.command_id => repeats += 1,
            ServerMessage::Command(c) => {
                assert_eq!(c.command_id, next.command_id);
                break;
            }
            other => anyhow::bail!("an agent that did not ask got {other:?}"),
        }
    }
    assert_eq!(repeats, 0, "the finished ping was sent again");
    s.stop().await
}

async fn commands_for_an_offline_agent_are_delivered_when_it_connects(
    backend: Backend,
) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let key = s.agent_key("a1").await?;
    let mut agent = FakeAgent::connect(&s.ws_url, &key, "a1", 2, vec![]).await?;
    let session = s.create_session("xterm").await?;
    agent.run_next(Action::StartSession).await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;
    agent.close().await;
    s.wait_agent_status("a1", AgentStatus::Offline).await?;

    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{}", session.id),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    let pending: Vec<streamspace_proto::api::Command> = s
        .list(&format!(
            "/api/v1/commands?session_id={}&status=pending",
            session.id
        ))
        .await?;
    assert_eq!(pending.len(), 1, "the stop waits as pending: {pending:?}");

    let running = FakeAgent::status(session.id, SessionState::Running);
    let mut agent = FakeAgent::connect(&s.ws_url, &key, "a1", 2, vec![running]).await?;
    let stop = agent.run_next(Action::StopSession).await?;
    assert_eq!(stop.command_id, pending[0].command_id);
    s.wait_session_state(session.id, SessionState::Terminated)
        .await?;
    s.stop().await
}

async fn unfinished_commands_are_redelivered_on_reconnect(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let key = s.agent_key("a1").await?;
    let mut agent = FakeAgent::connect(&s.ws_url, &key, "a1", 2, vec![]).await?;
    let session = s.create_session("xterm").await?;
    let start = agent.expect_command().await?;
    agent
        .send(&AgentMessage::Ack {
            command_id: start.command_id,
        })
        .await?;
    s.wait_command_status(start.command_id, CommandStatus::Acknowledged)
        .await?;
    agent.close().await;
    s.wait_agent_status("a1", AgentStatus::Offline).await?;

    let mut agent = FakeAgent::connect(&s.ws_url, &key, "a1", 2, vec![]).await?;
    let again = agent.expect_command().await?;
    assert_eq!(
        again.command_id, start.command_id,
        "the acknowledged start is sent again"
    );
    agent
        .ack_and_complete(again.command_id, json!({ "vnc_address": "127.0.0.1:5901" }))
        .await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;
    s.stop().await
}

async fn unacknowledged_commands_are_resent_a_bounded_number_of_times(
    backend: Backend,
) -> anyhow::Result<()> {
    let s = backend
        .server(ServerConfig {
            ack_timeout: Duration::from_millis(200),
            max_attempts: 3,
            ..fast_config()
        })
        .await?;
    let mut agent = s.agent("a1", 2).await?;
    s.settle(&mut agent).await?;
    let session = s.create_session("xterm").await?;
    let mut attempts = vec![];
    let mut ids = vec![];
    for _ in 0..3 {
        let command = agent.expect_command().await?;
        attempts.push(command.attempt);
        ids.push(command.command_id);
    }
    assert_eq!(attempts, [1, 2, 3], "each resend is a new attempt");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the resends are of the one start command: {ids:?}"
    );
    let commands: Vec<streamspace_proto::api::Command> = s
        .list(&format!("/api/v1/commands?session_id={}", session.id))
        .await?;
    let failed = s
        .wait_command_status(commands[0].command_id, CommandStatus::Failed)
        .await?;
    assert_eq!(failed.attempts, 3);
    // Failed, the command is never sent again: a ping answered after it flushes the socket.
    let ping = s.api.ping_agent("a1").await?;
    let next = agent.expect_command().await?;
    assert_eq!(
        next.command_id, ping.command_id,
        "sent beyond max_attempts: {next:?}"
    );
    assert_eq!(
        agent.deliveries(ids[0]),
        3,
        "the unacknowledged start arrives once per attempt, no more"
    );
    assert!(failed.error_message.is_some(), "a failed command says why");
    s.wait_session_state(session.id, SessionState::Failed)
        .await?;
    s.stop().await
}

async fn stuck_commands_fail_with_a_reason(backend: Backend) -> anyhow::Result<()> {
    let s = backend
        .server(ServerConfig {
            stuck_after: Duration::from_secs(1),
            ..fast_config()
        })
        .await?;
    let mut agent = s.agent("a1", 2).await?;
    let session = s.create_session("xterm").await?;
    let start = agent.expect_command().await?;
    agent
        .send(&AgentMessage::Ack {
            command_id: start.command_id,
        })
        .await?;
    let failed = s
        .wait_command_status(start.command_id, CommandStatus::Failed)
        .await?;
    let reason = failed.error_message.unwrap_or_default();
    assert!(!reason.is_empty(), "a stuck command fails with a reason");
    s.wait_session_state(session.id, SessionState::Failed)
        .await?;
    s.stop().await
}

async fn a_reconnect_never_evicts_itself(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let key = s.agent_key("a1").await?;
    let mut old = FakeAgent::connect(&s.ws_url, &key, "a1", 2, vec![]).await?;
    let mut new = FakeAgent::connect(&s.ws_url, &key, "a1", 2, vec![]).await?;
    assert!(new.epoch > old.epoch, "every registration bumps the epoch");
    let (code, _) = old.expect_close().await?;
    assert_eq!(code, 4001, "the older connection is closed as replaced");
    old.close().await;

    // The newer connection stays online and reachable after the old one's cleanup.
    let session = s.create_session("xterm").await?;
    new.run_next(Action::StartSession).await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;
    let info = s.agent_info("a1").await?;
    assert_eq!(info.status, AgentStatus::Online);
    assert_eq!(info.epoch, new.epoch);

    // An old socket that just vanishes (no close handshake) does not evict the new one either.
    let mut newest = FakeAgent::connect(
        &s.ws_url,
        &key,
        "a1",
        2,
        vec![FakeAgent::status(session.id, SessionState::Running)],
    )
    .await?;
    drop(new);
    newest.heartbeat(2).await?;
    s.settle(&mut newest).await?;
    let (status, _) = s
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{}/hibernate", session.id),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    newest.run_next(Action::HibernateSession).await?;
    s.wait_session_state(session.id, SessionState::Hibernated)
        .await?;
    let info = s.agent_info("a1").await?;
    assert_eq!(
        (info.status, info.epoch),
        (AgentStatus::Online, newest.epoch)
    );
    s.assert_no_repeats(&mut newest).await?;
    s.stop().await
}

async fn agents_act_only_on_their_own_sessions(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let mut owner = s.agent("owner", 2).await?;
    let mut other = s.agent("other", 0).await?;
    let session = s.create_session("xterm").await?;
    assert_eq!(session.agent_id.as_deref(), Some("owner"));
    owner.run_next(Action::StartSession).await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;

    other
        .send(&AgentMessage::SessionStatus(SessionStatus {
            session_id: session.id,
            state: SessionState::Terminated,
            vnc_address: None,
            message: None,
        }))
        .await?;
    let (code, reason) = other.expect_close().await?;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("not assigned"), "{reason}");
    let after = s.session(session.id).await?;
    assert_eq!(
        after.state,
        SessionState::Running,
        "a foreign agent changed the session"
    );

    // The owner may.
    owner
        .send(&AgentMessage::SessionStatus(FakeAgent::status(
            session.id,
            SessionState::Failed,
        )))
        .await?;
    s.wait_session_state(session.id, SessionState::Failed)
        .await?;
    s.stop().await
}

async fn registration_reconciles_reported_sessions(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let key = s.agent_key("a1").await?;
    let mut agent = FakeAgent::connect(&s.ws_url, &key, "a1", 4, vec![]).await?;
    let kept = s.create_session("xterm").await?;
    agent.run_next(Action::StartSession).await?;
    let lost = s.create_session("xterm").await?;
    agent.run_next(Action::StartSession).await?;
    s.wait_session_state(kept.id, SessionState::Running).await?;
    s.wait_session_state(lost.id, SessionState::Running).await?;
    agent.close().await;

    let report = vec![FakeAgent::status(kept.id, SessionState::Hibernated)];
    let _agent = FakeAgent::connect(&s.ws_url, &key, "a1", 4, report).await?;
    s.wait_session_state(kept.id, SessionState::Hibernated)
        .await?;
    let failed = s.wait_session_state(lost.id, SessionState::Failed).await?;
    assert_eq!(
        failed.error_message.as_deref(),
        Some("agent no longer has this session")
    );
    s.stop().await
}

async fn a_silent_agent_is_closed_after_three_heartbeats(backend: Backend) -> anyhow::Result<()> {
    let s = backend
        .server(ServerConfig {
            heartbeat_interval: Duration::from_secs(1),
            ..fast_config()
        })
        .await?;
    let mut silent = s.agent("silent", 1).await?;
    let mut alive = s.agent("alive", 1).await?;
    s.settle(&mut alive).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let (code, reason) = loop {
        tokio::select! {
            closed = silent.expect_close() => break closed?,
            _ = tick.tick() => alive.heartbeat(1).await?,
        }
    };
    assert_eq!(code, 4002, "{reason}");
    s.wait_agent_status("silent", AgentStatus::Offline).await?;
    alive.heartbeat(1).await?;
    assert_eq!(s.agent_info("alive").await?.status, AgentStatus::Online);
    let session = s.create_session("xterm").await?;
    assert_eq!(session.agent_id.as_deref(), Some("alive"));
    alive.run_next(Action::StartSession).await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;
    s.assert_no_repeats(&mut alive).await?;
    s.stop().await
}

async fn shutdown_tells_agents_to_reconnect(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let mut agent = s.agent("a1", 1).await?;
    let stopping = tokio::spawn(s.stop());
    match agent.recv().await? {
        ServerMessage::Shutdown { .. } => {}
        other => anyhow::bail!("expected shutdown, got {other:?}"),
    }
    let (code, _) = agent.expect_close().await?;
    assert_eq!(code, 1001);
    stopping.await??;
    Ok(())
}

/// `GET /api/v1/commands/{id}?wait=…` answers once the agent finishes the command, answers a
/// finished command at once, gives up after the wait with the command as it is, and refuses
/// waits out of range with a JSON error.
async fn waiting_reads_answer_when_the_command_finishes(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let mut agent = s.agent("a1", 1).await?;
    let (status, created) = s.call(Method::POST, "/api/v1/agents/a1/ping", None).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["command_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("/api/v1/commands/{id}?wait=20");
    let waiting = s.spawn_call(Method::GET, &path);
    let ping = agent.expect_command().await?;
    assert_eq!(ping.action, Action::Ping);
    // Only once the waiting read is parked does the agent answer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "the waiting read answered before the ping finished"
    );
    agent
        .ack_and_complete(ping.command_id, json!({ "pong": true }))
        .await?;
    let (status, body) = waiting.await??;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["result"], json!({ "pong": true }));

    // Finished already: the same answer without waiting.
    let (status, again) = s.call(Method::GET, &path, None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, body);

    // Create and wait in one request: 200 with the finished ping.
    let pinging = s.spawn_call(Method::POST, "/api/v1/agents/a1/ping?wait=20");
    let ping = agent.expect_command().await?;
    agent
        .ack_and_complete(ping.command_id, json!({ "pong": true }))
        .await?;
    let (status, body) = pinging.await??;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["command_id"], ping.command_id.to_string());

    // An agent that acknowledges but never finishes: the wait runs out and the command comes
    // back unfinished (202 for the create-and-wait form); the held-back ack is written.
    let (status, created) = s
        .call(Method::POST, "/api/v1/agents/a1/ping?wait=0.3", None)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["status"], "sent", "{created}");
    let unanswered = created["command_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ping = agent.expect_command().await?;
    agent
        .send(&AgentMessage::Ack {
            command_id: ping.command_id,
        })
        .await?;
    s.wait_command_status(ping.command_id, CommandStatus::Acknowledged)
        .await?;
    let (status, body) = s
        .call(
            Method::GET,
            &format!("/api/v1/commands/{unanswered}?wait=0.3"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "acknowledged", "{body}");
    let (status, body) = s
        .call(Method::POST, "/api/v1/agents/a1/ping?wait=0", None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    for bad in ["0", "-1", "61", "soon", "NaN"] {
        let (status, body) = s
            .call(
                Method::GET,
                &format!("/api/v1/commands/{id}?wait={bad}"),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "wait={bad}: {body}");
        assert_error(&body, "bad_request");
    }
    let (status, body) = s
        .call(
            Method::GET,
            &format!("/api/v1/commands/{}?wait=1", uuid::Uuid::now_v7()),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    Ok(())
}

/// A command created on the replica its agent is connected to is claimed in its own insert and
/// sent by the request (`sent`, attempt 1, in the API's answer), unless an earlier command of
/// the agent is still pending: then it waits behind that one, and both go in order.
async fn a_command_for_a_connected_agent_is_claimed_in_its_insert_behind_pending_ones(
    backend: Backend,
) -> anyhow::Result<()> {
    // No sweep during the test: only what the test does wakes the dispatcher.
    let s = backend
        .server(ServerConfig {
            sweep_interval: Duration::from_secs(3600),
            ..fast_config()
        })
        .await?;
    let key = s.agent_key("a1").await?;
    let mut agent = FakeAgent::connect(&s.ws_url, &key, "a1", 2, vec![]).await?;
    // The registration's first pass has run once a ping has gone through.
    s.settle(&mut agent).await?;

    // A command another replica queued (written straight to the database, nobody woken).
    let earlier = s
        .store
        .create_command(&streamspace_store::NewCommand {
            command_id: uuid::Uuid::now_v7(),
            agent_id: "a1".into(),
            session_id: None,
            action: Action::Ping,
            payload: json!({}),
            send_now: None,
        })
        .await?;
    let ping = s.api.ping_agent("a1").await?;
    assert_eq!(
        ping.status,
        CommandStatus::Pending,
        "a ping behind a pending command waits its turn: {ping:?}"
    );
    for expected in [earlier.command_id, ping.command_id] {
        let got = agent.expect_command().await?;
        assert_eq!(got.command_id, expected, "in the order they were created");
        agent
            .ack_and_complete(got.command_id, json!({ "pong": true }))
            .await?;
        s.wait_command_status(got.command_id, CommandStatus::Completed)
            .await?;
    }

    // Nothing pending: a ping is claimed in its insert. (A pass still running for the agent
    // sends it the dispatcher's way instead; the next ping then finds the turn free.)
    let mut claimed = None;
    for _ in 0..20 {
        let ping = s.api.ping_agent("a1").await?;
        let got = agent.expect_command().await?;
        assert_eq!((got.command_id, got.attempt), (ping.command_id, 1));
        agent
            .ack_and_complete(got.command_id, json!({ "pong": true }))
            .await?;
        s.wait_command_status(ping.command_id, CommandStatus::Completed)
            .await?;
        if ping.status == CommandStatus::Sent {
            claimed = Some(ping);
            break;
        }
    }
    let claimed = claimed.context("no ping of 20 was claimed in its insert")?;
    assert_eq!(claimed.attempts, 1);
    assert!(claimed.sent_at.is_some());
    s.stop().await
}

on_both_backends!(
    waiting_reads_answer_when_the_command_finishes,
    session_state_follows_command_results,
    failed_start_fails_the_session,
    late_ack_never_reopens_a_finished_command,
    recorded_results_are_confirmed_and_repeats_change_nothing,
    commands_for_an_offline_agent_are_delivered_when_it_connects,
    unfinished_commands_are_redelivered_on_reconnect,
    unacknowledged_commands_are_resent_a_bounded_number_of_times,
    stuck_commands_fail_with_a_reason,
    a_reconnect_never_evicts_itself,
    agents_act_only_on_their_own_sessions,
    registration_reconciles_reported_sessions,
    a_silent_agent_is_closed_after_three_heartbeats,
    shutdown_tells_agents_to_reconnect,
    a_command_for_a_connected_agent_is_claimed_in_its_insert_behind_pending_ones,
);
