//! Agent high availability with real processes: two `streamspace agent` processes share one
//! agent id, state directory and HA lock file against a real control plane. Only the lock
//! holder registers; when it is killed with SIGKILL the standby takes over, re-adopts the
//! session the dead process left running (a real Xvnc), and completes a command issued after
//! the kill.

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready};
use streamspace_client::Client;
use streamspace_proto::api::{Action, CommandStatus, SessionState};
use streamspace_testkit::vnc::read_rfb_banner;
use streamspace_testkit::wait_until;

const AGENT: &str = "ha-agent";
const WAIT: Duration = Duration::from_secs(40);

fn ha_agent(h: &mut Harness, name: &str, url: &str, key: &str) -> anyhow::Result<Proc> {
    let state = h.path("agent-state").display().to_string();
    let lock = h.path("agent.lock").display().to_string();
    h.spawn(
        name,
        &[
            "agent",
            "--server",
            url,
            "--agent-id",
            AGENT,
            "--key",
            key,
            "--runtime",
            "process",
            "--state-dir",
            &state,
            "--ha-lock-file",
            &lock,
            "--ha-retry-ms",
            "100",
        ],
        &[],
    )
}

/// Waits for a log line (the agent logs to stderr).
async fn wait_for_log(p: &Proc, needle: &str) -> anyhow::Result<()> {
    let path = p.stderr.clone();
    wait_until(&format!("{needle:?} in {}'s log", p.name), WAIT, || {
        let found = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .contains(needle);
        async move { found.then_some(()) }
    })
    .await
    .with_context(|| p.logs())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_takes_over_when_the_active_agent_is_killed() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let db = h.sqlite_url();
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key(AGENT).await?.secret;

    let mut first = ha_agent(&mut h, "agent-first", &url, &key)?;
    wait_for_log(&first, "this agent is active").await?;
    wait_for_agent_online(&api, AGENT)
        .await
        .with_context(|| first.logs())?;
    let second = ha_agent(&mut h, "agent-second", &url, &key)?;
    wait_for_log(&second, "standing by").await?;
    let epoch = api.get_agent(AGENT).await?.epoch;

    let session = api.create_session("xterm").await?;
    let running = api
        .wait_for_session(session.id, SessionState::Running, Instant::now() + WAIT)
        .await
        .with_context(|| first.logs())?;
    let vnc = running
        .vnc_address
        .context("a running session has an address")?;
    assert_eq!(
        api.get_agent(AGENT).await?.epoch,
        epoch,
        "the standby registered while the active agent was alive"
    );

    first.kill();
    // Issued after the kill: only the standby can complete it.
    api.hibernate_session(session.id).await?;
    wait_for_log(&second, "this agent is active").await?;
    let logs = || format!("{}\n{}\n{}", server.logs(), first.logs(), second.logs());
    api.wait_for_session(session.id, SessionState::Hibernated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    let commands = api
        .list_commands(&streamspace_proto::api::CommandFilter {
            session_id: Some(session.id),
            ..Default::default()
        })
        .await?;
    let hibernate = commands
        .iter()
        .find(|c| c.action == Action::HibernateSession)
        .context("a hibernate command exists")?;
    assert_eq!(hibernate.status, CommandStatus::Completed, "{hibernate:?}");
    assert_eq!(
        api.get_agent(AGENT).await?.epoch,
        epoch + 1,
        "exactly one new registration: the standby's"
    );

    // The adopted session is the same Xvnc, and the new active agent runs it on.
    assert_eq!(h.xvnc_processes().len(), 1, "{}", logs());
    api.wake_session(session.id).await?;
    let woken = api
        .wait_for_session(session.id, SessionState::Running, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    assert_eq!(woken.vnc_address.as_deref(), Some(vnc.as_str()));
    let banner = read_rfb_banner(&vnc).await.with_context(logs)?;
    assert!(banner.starts_with("RFB "), "{banner:?}");
    api.stop_session(session.id).await?;
    api.wait_for_session(session.id, SessionState::Terminated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    Ok(())
}
