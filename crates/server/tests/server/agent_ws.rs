//! The agent WebSocket endpoint refusing bad agents — each time without disturbing a good one.

use serde_json::json;
use streamspace_proto::api::{Action, SessionState};
use streamspace_proto::wire::{self, AgentMessage, Capacity};

use crate::common::fake_agent::{self, register_message};
use crate::common::{FakeAgent, TestServer, assert_error, fast_config};

/// A server with one well-behaved agent, `good`, connected.
async fn with_good_agent() -> anyhow::Result<(TestServer, FakeAgent)> {
    let s = TestServer::sqlite(fast_config()).await?;
    let good = s.agent("good", 100).await?;
    Ok((s, good))
}

/// The good agent still receives and completes work.
async fn assert_still_works(s: &TestServer, good: &mut FakeAgent) -> anyhow::Result<()> {
    let session = s.create_session("xterm").await?;
    assert_eq!(session.agent_id.as_deref(), Some("good"));
    good.run_next(Action::StartSession).await?;
    s.wait_session_state(session.id, SessionState::Running)
        .await?;
    let info = s.agent_info("good").await?;
    assert_eq!(
        info.epoch, good.epoch,
        "the good agent's connection was not replaced"
    );
    Ok(())
}

/// Connects `bad` (a key for `bad`, no capacity so nothing is placed on it) and registers it.
async fn bad_agent(s: &TestServer) -> anyhow::Result<FakeAgent> {
    let key = s.agent_key("bad").await?;
    FakeAgent::connect(&s.ws_url, &key, "bad", 0, vec![]).await
}

#[tokio::test]
async fn wrong_key_is_refused_with_401() -> anyhow::Result<()> {
    let (s, mut good) = with_good_agent().await?;
    for key in ["ssk_not-a-real-key", ""] {
        match fake_agent::open(&s.ws_url, key, None).await? {
            Err(refused) => {
                assert_eq!(refused.status, 401, "key {key:?}");
                assert_error(&refused.body, "unauthorized");
            }
            Ok(_) => anyhow::bail!("key {key:?} was accepted"),
        }
    }
    assert_still_works(&s, &mut good).await?;
    s.stop().await
}

#[tokio::test]
async fn origin_header_is_refused_with_403() -> anyhow::Result<()> {
    let (s, mut good) = with_good_agent().await?;
    let key = s.agent_key("bad").await?;
    match fake_agent::open(&s.ws_url, &key, Some("https://evil.example")).await? {
        Err(refused) => {
            assert_eq!(refused.status, 403);
            assert_error(&refused.body, "forbidden_origin");
        }
        Ok(_) => anyhow::bail!("a browser (Origin header) was accepted"),
    }
    assert_still_works(&s, &mut good).await?;
    s.stop().await
}

#[tokio::test]
async fn key_bound_to_another_agent_cannot_take_it_over() -> anyhow::Result<()> {
    let (s, mut good) = with_good_agent().await?;
    let key = s.agent_key("bad").await?;
    let ws = fake_agent::open(&s.ws_url, &key, None)
        .await?
        .map_err(|r| anyhow::anyhow!("refused: {r:?}"))?;
    let mut impostor = FakeAgent::raw("impostor", ws);
    impostor
        .send(&register_message("good", 100, vec![]))
        .await?;
    let (code, reason) = impostor.expect_close().await?;
    assert_eq!(code, 1008, "{reason}");
    assert!(
        reason.contains("bound"),
        "reason names the problem: {reason}"
    );
    assert_still_works(&s, &mut good).await?;
    s.stop().await
}

#[tokio::test]
async fn first_message_must_be_register() -> anyhow::Result<()> {
    let (s, mut good) = with_good_agent().await?;
    let key = s.agent_key("bad").await?;
    let ws = fake_agent::open(&s.ws_url, &key, None)
        .await?
        .map_err(|r| anyhow::anyhow!("refused: {r:?}"))?;
    let mut bad = FakeAgent::raw("bad", ws);
    bad.heartbeat(1).await?;
    let (code, reason) = bad.expect_close().await?;
    assert_eq!(code, 1008, "{reason}");
    assert_still_works(&s, &mut good).await?;
    s.stop().await
}

/// Registers `bad`, sends `frame`, and expects the connection closed with `code`.
async fn bad_frame_closes(frame: BadFrame, code: u16) -> anyhow::Result<()> {
    let (s, mut good) = with_good_agent().await?;
    let mut bad = bad_agent(&s).await?;
    match frame {
        BadFrame::Text(text) => bad.send_text(&text).await?,
        BadFrame::Binary(bytes) => bad.send_binary(bytes).await?,
    }
    let (got, reason) = bad.expect_close().await?;
    assert_eq!(got, code, "close code (reason: {reason})");
    assert!(!reason.is_empty(), "the close reason names the problem");
    s.wait_agent_status("bad", streamspace_proto::api::AgentStatus::Offline)
        .await?;
    assert_still_works(&s, &mut good).await?;
    s.stop().await
}

enum BadFrame {
    Text(String),
    Binary(Vec<u8>),
}

#[tokio::test]
async fn malformed_json_closes_with_1007() -> anyhow::Result<()> {
    bad_frame_closes(BadFrame::Text("{not json".into()), 1007).await
}

#[tokio::test]
async fn two_messages_in_one_frame_close_with_1007() -> anyhow::Result<()> {
    let hb = wire::encode(&AgentMessage::Heartbeat {
        active_sessions: 0,
        capacity: Capacity { max_sessions: 0 },
    });
    bad_frame_closes(BadFrame::Text(format!("{hb}{hb}")), 1007).await
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() -> anyhow::Result<()> {
    let text = json!({ "v": 1, "type": "failed", "error": "x".repeat(wire::MAX_MESSAGE_BYTES) });
    bad_frame_closes(BadFrame::Text(text.to_string()), 1009).await
}

#[tokio::test]
async fn unknown_type_closes_with_1003() -> anyhow::Result<()> {
    bad_frame_closes(BadFrame::Text(r#"{"v":1,"type":"teleport"}"#.into()), 1003).await
}

#[tokio::test]
async fn binary_frame_closes_with_1003() -> anyhow::Result<()> {
    bad_frame_closes(BadFrame::Binary(vec![0, 1, 2, 3]), 1003).await
}

#[tokio::test]
async fn wrong_protocol_version_closes_with_1007() -> anyhow::Result<()> {
    bad_frame_closes(
        BadFrame::Text(r#"{"v":99,"type":"heartbeat"}"#.into()),
        1007,
    )
    .await
}

#[tokio::test]
async fn connection_limit_is_enforced() -> anyhow::Result<()> {
    let s = TestServer::sqlite(streamspace_server::ServerConfig {
        max_agent_connections: 1,
        ..fast_config()
    })
    .await?;
    let mut good = s.agent("good", 100).await?;
    let key = s.agent_key("extra").await?;
    match fake_agent::open(&s.ws_url, &key, None).await? {
        Err(refused) => {
            assert_eq!(refused.status, 503);
            assert_error(&refused.body, "too_many_connections");
        }
        Ok(_) => anyhow::bail!("a connection beyond the limit was accepted"),
    }
    assert_still_works(&s, &mut good).await?;
    s.stop().await
}
