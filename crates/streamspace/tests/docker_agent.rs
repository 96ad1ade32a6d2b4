//! The docker runtime through the whole stack: a real server, `streamspace agent --runtime docker
//! --docker-host …` against Podman's Docker API socket, and a template with an image built
//! locally. The session's container runs and answers on its VNC port; an agent restarted with
//! SIGKILL adopts the running container and goes on to hibernate, wake and stop it.

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready};
use streamspace_client::Client;
use streamspace_proto::api::{CreateTemplate, SessionState};
use streamspace_testkit::Podman;
use streamspace_testkit::vnc::read_rfb_banner;

const AGENT: &str = "docker-agent";
const IMAGE: &str = "localhost/streamspace-session:e2e";
const WAIT: Duration = Duration::from_secs(40);

fn docker_agent(h: &mut Harness, url: &str, key: &str, podman: &Podman) -> anyhow::Result<Proc> {
    let state = h.path("agent-state").display().to_string();
    h.spawn(
        "agent-docker",
        &[
            "agent",
            "--server",
            url,
            "--agent-id",
            AGENT,
            "--key",
            key,
            "--runtime",
            "docker",
            "--docker-host",
            &podman.docker_host(),
            "--state-dir",
            &state,
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_agent_runs_sessions_and_adopts_them_after_a_restart() -> anyhow::Result<()> {
    let podman = Podman::start()?;
    podman.import_session_image(IMAGE)?;
    let mut h = common::harness()?;
    let db = h.sqlite_url();
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key(AGENT).await?.secret;
    api.create_template(&CreateTemplate {
        name: "busybox".into(),
        image: Some(IMAGE.into()),
        ..Default::default()
    })
    .await?;

    let mut agent = docker_agent(&mut h, &url, &key, &podman)?;
    wait_for_agent_online(&api, AGENT)
        .await
        .with_context(|| agent.logs())?;
    assert_eq!(api.get_agent(AGENT).await?.platform, "docker");
    let session = api.create_session("busybox").await?;
    let running = api
        .wait_for_session(session.id, SessionState::Running, Instant::now() + WAIT)
        .await
        .with_context(|| format!("{}\n{}", server.logs(), agent.logs()))?;
    let vnc = running
        .vnc_address
        .context("a running session has an address")?;
    assert!(read_rfb_banner(&vnc).await?.starts_with("RFB "));

    agent.kill();
    let agent = docker_agent(&mut h, &url, &key, &podman)?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, AGENT)
        .await
        .with_context(logs)?;
    api.hibernate_session(session.id).await?;
    api.wait_for_session(session.id, SessionState::Hibernated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    let paused = podman.run(&[
        "inspect",
        "--format",
        "{{.State.Status}}",
        &format!("streamspace-{}", session.id),
    ])?;
    assert_eq!(
        paused.trim(),
        "paused",
        "the adopted container was not paused"
    );
    api.wake_session(session.id).await?;
    let woken = api
        .wait_for_session(session.id, SessionState::Running, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    assert_eq!(woken.vnc_address.as_deref(), Some(vnc.as_str()));
    api.stop_session(session.id).await?;
    api.wait_for_session(session.id, SessionState::Terminated, Instant::now() + WAIT)
        .await
        .with_context(logs)?;
    let left = podman.run(&["ps", "--all", "--quiet"])?;
    assert!(left.trim().is_empty(), "containers left after stop: {left}");
    Ok(())
}
