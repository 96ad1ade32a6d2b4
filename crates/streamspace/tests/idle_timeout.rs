//! Idle timeout end to end: real server and agent processes, a real Xvnc session, a viewer
//! through the tunnel. A session with a viewer stays running past its template's idle time;
//! once the viewer leaves it is hibernated by its agent, and again after a wake.

mod common;
#[allow(dead_code)]
#[path = "streaming/viewer.rs"]
mod viewer;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{ADMIN_TOKEN, wait_for_agent_online, wait_for_ready};
use streamspace_client::Client;
use streamspace_proto::api::{CreateTemplate, SessionState};

const WAIT: Duration = Duration::from_secs(40);
const IDLE_SECS: u32 = 2;

#[tokio::test(flavor = "multi_thread")]
async fn sessions_without_viewers_are_hibernated_after_the_idle_timeout() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let db = h.sqlite_url();
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("idle-agent").await?.secret;
    let agent = h.agent(&url, "idle-agent", &key, &h.path("agent-state"))?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, "idle-agent")
        .await
        .with_context(logs)?;
    api.create_template(&CreateTemplate {
        name: "idle-xterm".into(),
        command: vec!["xterm".into()],
        idle_timeout_secs: Some(IDLE_SECS),
        ..Default::default()
    })
    .await?;

    let session = api.create_session("idle-xterm").await?;
    api.wait_for_session(session.id, SessionState::Running, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    let info = api.connect_session(session.id).await?;
    let (ws, _) = viewer::open(&info.url, None).await.with_context(logs)?;
    let mut rfb = viewer::Rfb::new(ws);
    let banner = rfb.read_exact(12).await.with_context(logs)?;
    ensure!(banner.starts_with(b"RFB "), "{banner:?}");

    // Watched for well past the idle time: a viewed session stays running.
    let watch_until = Instant::now() + Duration::from_secs(u64::from(IDLE_SECS) * 2 + 1);
    while Instant::now() < watch_until {
        let state = api.get_session(session.id).await?.state;
        ensure!(
            state == SessionState::Running,
            "a session with a viewer became {state}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    drop(rfb);
    api.wait_for_session(session.id, SessionState::Hibernated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    api.wake_session(session.id).await?;
    api.wait_for_session(session.id, SessionState::Running, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    api.wait_for_session(session.id, SessionState::Hibernated, Instant::now() + WAIT)
        .await
        .with_context(|| format!("the idle clock did not restart after a wake\n{}", logs()))?;
    api.stop_session(session.id).await?;
    api.wait_for_session(session.id, SessionState::Terminated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    Ok(())
}

/// A killed agent's idle clocks are in its state directory: the agent started after it resumes
/// them for the sessions it re-adopts, and hibernates the unviewed session itself, although
/// nothing starts that session again.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_resumes_the_idle_timers() -> anyhow::Result<()> {
    // Long enough that the first agent is killed well before the session is due.
    const RESTART_IDLE_SECS: u32 = 10;
    let mut h = common::harness()?;
    let db = h.sqlite_url();
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("idle-agent").await?.secret;
    let state_dir = h.path("agent-state");
    let mut first = h.agent(&url, "idle-agent", &key, &state_dir)?;
    wait_for_agent_online(&api, "idle-agent")
        .await
        .with_context(|| format!("{}\n{}", server.logs(), first.logs()))?;
    api.create_template(&CreateTemplate {
        name: "idle-xterm".into(),
        command: vec!["xterm".into()],
        idle_timeout_secs: Some(RESTART_IDLE_SECS),
        ..Default::default()
    })
    .await?;
    let session = api.create_session("idle-xterm").await?;
    api.wait_for_session(session.id, SessionState::Running, Instant::now() + WAIT)
        .await
        .with_context(|| format!("{}\n{}", server.logs(), first.logs()))?;

    first.kill();
    let agent = h.agent(&url, "idle-agent", &key, &state_dir)?;
    let logs = || {
        format!(
            "{}\n--- the killed agent ---\n{}\n--- the restarted agent ---\n{}",
            server.logs(),
            first.logs(),
            agent.logs()
        )
    };
    ensure!(
        !first.logs().contains("hibernated an idle session"),
        "the first agent hibernated the session before it was killed\n{}",
        logs()
    );
    api.wait_for_session(session.id, SessionState::Hibernated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    let restarted = agent.logs();
    ensure!(
        restarted.contains("resumed idle timers")
            && restarted.contains("hibernated an idle session"),
        "the restarted agent resumed the timer and hibernated the session\n{}",
        logs()
    );
    api.stop_session(session.id).await?;
    api.wait_for_session(session.id, SessionState::Terminated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    Ok(())
}
