//! Streams across replicas: the viewer on replica B, the agent (and its data connection) on
//! replica A, one hop between them through Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use streamspace_client::Client;
use streamspace_proto::api::SessionState;
use streamspace_testkit::PgCluster;
use streamspace_testkit::redis::RedisServer;
use tokio_tungstenite::tungstenite::Message;

use super::common::{ADMIN_TOKEN, wait_for_agent_online, wait_for_ready};
use super::{START_TIMEOUT, targets, viewer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_another_replica_reaches_the_agent_through_one_hop() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut h = super::common::harness()?;
    let db = pg.create_database()?;
    let args = ["--redis-url", &redis.url(), "--heartbeat-interval", "1"];
    let (a, url_a) = h.replica(&db, "A", "127.0.0.1:0", &args).await?;
    let (b, url_b) = h.replica(&db, "B", "127.0.0.1:0", &args).await?;
    let logs = || format!("{}\n{}", a.logs(), b.logs());
    let api_a = Client::new(&url_a, ADMIN_TOKEN)?;
    let api_b = Client::new(&url_b, ADMIN_TOKEN)?;
    wait_for_ready(&api_a).await.with_context(logs)?;
    wait_for_ready(&api_b).await.with_context(logs)?;

    let runtime = Arc::new(targets::TargetRuntime::new([targets::echo().await?]));
    let key = api_a.create_agent_key("hop-agent").await?;
    let config = streamspace_agent::AgentConfig::new(
        vec![url_a.clone()],
        "hop-agent",
        key.secret,
        h.path("hop"),
    );
    let stop_agent = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(streamspace_agent::run_with_runtime(
        config,
        runtime,
        stop_agent.clone(),
    ));
    wait_for_agent_online(&api_a, "hop-agent")
        .await
        .with_context(logs)?;
    let session = api_a.create_session("xterm").await?;
    api_a
        .wait_for_session(
            session.id,
            SessionState::Running,
            Instant::now() + START_TIMEOUT,
        )
        .await
        .with_context(logs)?;

    // The browser lands on B; the agent is held by A and dials its data connection to A.
    let info = api_b.connect_session(session.id).await?;
    assert!(
        info.url.contains(url_b.trim_start_matches("http://")),
        "{}",
        info.url
    );
    let (ws, _) = viewer::open(&info.url, None).await.with_context(logs)?;
    let (mut tx, mut rx) = ws.split();
    let sent: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    for chunk in sent.chunks(32 * 1024) {
        tx.send(Message::binary(chunk.to_vec())).await?;
    }
    let mut back = Vec::new();
    while back.len() < sent.len() {
        match tokio::time::timeout(Duration::from_secs(20), rx.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => back.extend_from_slice(&b),
            Ok(Some(Ok(_))) => {}
            other => anyhow::bail!(
                "echo through two replicas failed after {} bytes: {other:?}\n{}",
                back.len(),
                logs()
            ),
        }
    }
    assert_eq!(
        back, sent,
        "bytes cross the replica hop unchanged, both ways"
    );
    stop_agent.cancel();
    agent.await??;
    Ok(())
}
