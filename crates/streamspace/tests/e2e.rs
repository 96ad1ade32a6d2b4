//! End-to-end: real `streamspace` server and agent processes, real PostgreSQL, real Xvnc.
//!
//! These are the flows an operator relies on: a session goes through its whole life on separate
//! processes; an agent killed in the middle of a command does not run the session twice; commands
//! issued while an agent is away reach it when it returns; `streamspace up` works from nothing.

mod common;

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{ADMIN_TOKEN, Harness, commands_for, wait_for_agent_online, wait_for_ready};
use streamspace_client::Client;
use streamspace_proto::api::{Action, AgentStatus, CommandStatus, SessionState};
use streamspace_proto::wire::AgentMessage;
use streamspace_testkit::harness::Signal;
use streamspace_testkit::relay::AgentRelay;
use streamspace_testkit::vnc::read_rfb_banner;
use streamspace_testkit::{PgCluster, wait_until};
use uuid::Uuid;

const START_TIMEOUT: Duration = Duration::from_secs(40);

/// Server + agent as separate processes on a fresh PostgreSQL database.
async fn platform(
    h: &mut Harness,
    pg: &PgCluster,
) -> anyhow::Result<(common::Proc, common::Proc, Client, String)> {
    let db = pg.create_database()?;
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("e2e-agent").await?;
    let state_dir = h.path("agent-state");
    let agent = h.agent(&url, "e2e-agent", &key.secret, &state_dir)?;
    wait_for_agent_online(&api, "e2e-agent")
        .await
        .with_context(|| format!("{}\n{}", server.logs(), agent.logs()))?;
    Ok((server, agent, api, key.secret))
}

fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test(flavor = "multi_thread")]
async fn session_lives_its_whole_life_across_separate_processes() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut h = common::harness()?;
    let (server, agent, api, _) = platform(&mut h, &pg).await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());

    let session = api.create_session("xterm").await?;
    assert_eq!(session.state, SessionState::Pending);
    assert_eq!(session.id.get_version_num(), 7, "session ids are UUIDv7");
    let running = api
        .wait_for_session(
            session.id,
            SessionState::Running,
            Instant::now() + START_TIMEOUT,
        )
        .await
        .with_context(logs)?;
    let vnc = running
        .vnc_address
        .clone()
        .context("a running session reports its VNC address")?;
    assert_eq!(read_rfb_banner(&vnc).await?, "RFB 003.008\n");
    let xvnc = h.xvnc_processes();
    assert_eq!(xvnc.len(), 1, "exactly one Xvnc for one session: {xvnc:?}");
    let xvnc_pid = xvnc[0].0;

    api.hibernate_session(session.id).await?;
    api.wait_for_session(
        session.id,
        SessionState::Hibernated,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    assert_eq!(
        process_state(xvnc_pid),
        Some('T'),
        "hibernated Xvnc is stopped"
    );

    api.wake_session(session.id).await?;
    let woken = api
        .wait_for_session(
            session.id,
            SessionState::Running,
            Instant::now() + START_TIMEOUT,
        )
        .await
        .with_context(logs)?;
    let vnc = woken
        .vnc_address
        .context("woken session has a VNC address")?;
    assert_eq!(read_rfb_banner(&vnc).await?, "RFB 003.008\n");

    api.stop_session(session.id).await?;
    api.wait_for_session(
        session.id,
        SessionState::Terminated,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    wait_until(
        "the session's Xvnc to be gone",
        Duration::from_secs(10),
        || {
            let gone = h.xvnc_processes().is_empty();
            async move { gone.then_some(()) }
        },
    )
    .await?;

    let commands = commands_for(&api, session.id).await?;
    let actions: Vec<Action> = commands.iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        [
            Action::StartSession,
            Action::HibernateSession,
            Action::WakeSession,
            Action::StopSession
        ]
    );
    for c in &commands {
        assert_eq!(c.status, CommandStatus::Completed, "{c:?}");
        let sent = c.sent_at.context("sent_at set")?;
        let acked = c.acknowledged_at.context("acknowledged_at set")?;
        let completed = c.completed_at.context("completed_at set")?;
        assert!(
            sent <= acked && acked <= completed && completed <= c.updated_at,
            "timestamps out of order: {c:?}"
        );
        assert!(c.created_at <= sent, "{c:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_after_ack_runs_the_session_once() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut h = common::harness()?;
    let db = pg.create_database()?;
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("e2e-agent").await?.secret;
    // The agent reaches the server through a relay that passes its first ack on and nothing
    // after it, and says when: whatever the agent does next, the server has seen the ack and
    // no result, so the agent dies in the acknowledged window by construction.
    let (relay, mut acks) =
        AgentRelay::start(&url, |m| matches!(m, AgentMessage::Ack { .. })).await?;
    let state_dir = h.path("agent-state");
    let mut agent = h.agent(&relay.url, "e2e-agent", &key, &state_dir)?;
    wait_for_agent_online(&api, "e2e-agent")
        .await
        .with_context(|| format!("{}\n{}", server.logs(), agent.logs()))?;

    let session = api.create_session("xterm").await?;
    let commands = commands_for(&api, session.id).await?;
    let start = commands
        .first()
        .context("the session has a start command")?
        .command_id;
    let ack = tokio::time::timeout(START_TIMEOUT, acks.recv())
        .await
        .with_context(|| format!("the agent sent no ack\n{}", agent.logs()))?
        .context("the relay ended")?;
    agent.signal(Signal::SIGSTOP)?;
    assert!(
        matches!(ack, AgentMessage::Ack { command_id } if command_id == start),
        "the first ack is the start's: {ack:?}"
    );
    wait_until("the server to record the ack", START_TIMEOUT, || {
        let api = api.clone();
        async move {
            let c = api.get_command(start).await.ok()?;
            (c.status == CommandStatus::Acknowledged).then_some(())
        }
    })
    .await
    .with_context(|| server.logs())?;
    agent.kill();
    drop(relay);

    let killed = agent;
    let agent = h.agent(&url, "e2e-agent", &key, &state_dir)?;
    let logs = || {
        format!(
            "{}\n--- the killed agent ---\n{}\n--- the restarted agent ---\n{}",
            server.logs(),
            killed.logs(),
            agent.logs()
        )
    };
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    let finished = wait_until("the start command to finish", START_TIMEOUT, || {
        let api = api.clone();
        async move {
            api.get_command(start)
                .await
                .ok()
                .filter(|c| c.status.is_terminal())
        }
    })
    .await
    .with_context(logs)?;
    assert_eq!(finished.status, CommandStatus::Completed, "{finished:?}");
    let commands = commands_for(&api, session.id).await?;
    assert_eq!(commands.len(), 1, "no second start command: {commands:?}");
    // Give a duplicate start every chance to show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let xvnc = h.xvnc_processes();
    assert_eq!(
        xvnc.len(),
        1,
        "the session runs once, not twice: {xvnc:?}\n{}",
        logs()
    );
    Ok(())
}

/// The start's result is lost with its connection: the relay drops the agent's `complete` and
/// cuts the connection, so the agent did the work and the server never heard of it. After the
/// agent reconnects the command is completed once and the session runs once.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_lost_with_its_connection_is_recorded_once_after_reconnecting()
-> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut h = common::harness()?;
    let db = pg.create_database()?;
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("e2e-agent").await?.secret;
    let (relay, mut cut) =
        AgentRelay::cut_before(&url, |m| matches!(m, AgentMessage::Complete { .. })).await?;
    let agent = h.agent(&relay.url, "e2e-agent", &key, &h.path("agent-state"))?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, "e2e-agent")
        .await
        .with_context(logs)?;

    let session = api.create_session("xterm").await?;
    let start = commands_for(&api, session.id)
        .await?
        .first()
        .context("the session has a start command")?
        .command_id;
    let lost = tokio::time::timeout(START_TIMEOUT, cut.recv())
        .await
        .with_context(|| format!("the agent sent no result\n{}", logs()))?
        .context("the relay ended")?;
    assert!(
        matches!(lost, AgentMessage::Complete { command_id, .. } if command_id == start),
        "the cut result is the start's: {lost:?}"
    );
    let finished = wait_until("the start command to finish", START_TIMEOUT, || {
        let api = api.clone();
        async move {
            api.get_command(start)
                .await
                .ok()
                .filter(|c| c.status.is_terminal())
        }
    })
    .await
    .with_context(logs)?;
    assert_eq!(finished.status, CommandStatus::Completed, "{finished:?}");
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    let commands = commands_for(&api, session.id).await?;
    assert_eq!(commands.len(), 1, "no second start command: {commands:?}");
    let xvnc = h.xvnc_processes();
    assert_eq!(xvnc.len(), 1, "the session runs once: {xvnc:?}\n{}", logs());
    let recorded = server
        .logs()
        .lines()
        .filter(|l| l.contains("command finished") && l.contains(&start.to_string()))
        .count();
    assert_eq!(recorded, 1, "the result is recorded once\n{}", logs());
    Ok(())
}

/// The server cannot record the start's result (its database refuses the write) while the
/// agent's connection stays up, so nothing re-asks for it: the agent sends the result again
/// until the server has recorded it.
#[tokio::test(flavor = "multi_thread")]
async fn a_result_the_server_failed_to_record_is_sent_again() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut h = common::harness()?;
    let db = pg.create_database()?;
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("e2e-agent").await?.secret;
    let agent = h.agent(&url, "e2e-agent", &key, &h.path("agent-state"))?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, "e2e-agent")
        .await
        .with_context(logs)?;
    pg.execute(
        &db,
        "CREATE FUNCTION refuse_results() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'test: results are refused'; END $$; \
         CREATE TRIGGER refuse_results BEFORE UPDATE ON agent_commands FOR EACH ROW \
         WHEN (NEW.status IN ('completed', 'failed')) EXECUTE FUNCTION refuse_results();",
    )?;

    let session = api.create_session("xterm").await?;
    let start = commands_for(&api, session.id)
        .await?
        .first()
        .context("the session has a start command")?
        .command_id;
    wait_until(
        "the server to fail recording the result",
        START_TIMEOUT,
        || {
            let failed = server.logs().contains("recording a command result failed");
            async move { failed.then_some(()) }
        },
    )
    .await
    .with_context(logs)?;
    let refused = api.get_command(start).await?;
    assert!(
        !refused.status.is_terminal(),
        "the refused result is not recorded: {refused:?}"
    );
    pg.execute(&db, "DROP TRIGGER refuse_results ON agent_commands;")?;

    let finished = wait_until("the start command to finish", START_TIMEOUT, || {
        let api = api.clone();
        async move {
            api.get_command(start)
                .await
                .ok()
                .filter(|c| c.status.is_terminal())
        }
    })
    .await
    .with_context(logs)?;
    assert_eq!(finished.status, CommandStatus::Completed, "{finished:?}");
    let running = api.get_session(session.id).await?;
    assert_eq!(running.state, SessionState::Running, "{running:?}");
    assert!(
        agent
            .logs()
            .contains("sending results the control plane has not confirmed again"),
        "the agent resent the result\n{}",
        logs()
    );
    let xvnc = h.xvnc_processes();
    assert_eq!(xvnc.len(), 1, "the session runs once: {xvnc:?}\n{}", logs());
    Ok(())
}

fn server_url(api: &Client) -> String {
    api.base_url().as_str().trim_end_matches('/').to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_wait_for_an_offline_agent() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut h = common::harness()?;
    let (server, mut agent, api, key) = platform(&mut h, &pg).await?;

    let session = api.create_session("xterm").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(|| agent.logs())?;

    agent.terminate().await?;
    wait_until("the agent to be offline", Duration::from_secs(20), || {
        let api = api.clone();
        async move {
            let a = api.get_agent("e2e-agent").await.ok()?;
            (a.status == AgentStatus::Offline).then_some(())
        }
    })
    .await
    .with_context(|| server.logs())?;

    api.hibernate_session(session.id).await?;
    let hibernate = commands_for(&api, session.id)
        .await?
        .into_iter()
        .find(|c| c.action == Action::HibernateSession)
        .context("a hibernate command was created")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = api.get_command(hibernate.command_id).await?;
    assert_eq!(
        still.status,
        CommandStatus::Pending,
        "nobody to deliver to yet: {still:?}"
    );

    let agent = h.agent(&server_url(&api), "e2e-agent", &key, &h.path("agent-state"))?;
    api.wait_for_session(
        session.id,
        SessionState::Hibernated,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(|| format!("{}\n{}", server.logs(), agent.logs()))?;
    let done = api.get_command(hibernate.command_id).await?;
    assert_eq!(done.status, CommandStatus::Completed, "{done:?}");

    api.stop_session(session.id).await?;
    api.wait_for_session(
        session.id,
        SessionState::Terminated,
        Instant::now() + START_TIMEOUT,
    )
    .await?;
    Ok(())
}

/// The admin signs in to the web UI with the password `up` prints: generated and saved (0600) on
/// the first start, printed again unchanged by the next.
#[tokio::test(flavor = "multi_thread")]
async fn up_prints_a_password_the_admin_signs_in_with() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = common::harness()?;
    let (mut up, url, data) = h.up().await?;
    let password_file = data.join("admin-password");
    let password = std::fs::read_to_string(&password_file)?.trim().to_owned();
    assert_eq!(
        std::fs::metadata(&password_file)?.permissions().mode() & 0o777,
        0o600,
        "the admin password must be readable by its owner only"
    );
    let line = up.wait_for_stdout("Sign in at").await?;
    assert!(
        line.contains(&format!("{url} as admin with password {password}"))
            && line.contains(&password_file.display().to_string()),
        "{line}"
    );
    let signed_in = sign_in_as_admin(&up, &url, &password).await?;
    assert_eq!(signed_in.role, streamspace_proto::api::Role::Admin);

    up.terminate().await?;
    let (up, url, _) = h.up().await?;
    let line = up.wait_for_stdout("Sign in at").await?;
    assert!(
        line.contains(&format!("with password {password}")),
        "{line}"
    );
    sign_in_as_admin(&up, &url, &password)
        .await
        .context("after a restart")?;
    Ok(())
}

async fn sign_in_as_admin(
    up: &common::Proc,
    url: &str,
    password: &str,
) -> anyhow::Result<streamspace_proto::api::User> {
    let anonymous = Client::new(url, "")?;
    wait_for_ready(&anonymous)
        .await
        .with_context(|| up.logs())?;
    let request = streamspace_proto::api::LoginRequest {
        username: "admin".into(),
        password: password.to_owned(),
        ..Default::default()
    };
    let answer = anonymous
        .login(&request)
        .await
        .context("signing in as admin with the printed password")?;
    Ok(answer.user)
}

#[tokio::test(flavor = "multi_thread")]
async fn up_from_a_fresh_data_dir_runs_an_xterm_session() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (up, url, data) = h.up().await?;
    let token_file = data.join("admin-token");
    let token = std::fs::read_to_string(&token_file)?.trim().to_owned();
    let line = up.wait_for_stdout("Admin token:").await?;
    assert!(
        line.contains(&token_file.display().to_string()),
        "up says where the admin token is: {line}"
    );
    assert!(
        !up.logs().contains(&token),
        "up printed the admin token itself:\n{}",
        up.logs()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file)?.permissions().mode() & 0o777,
        0o600
    );

    let api = Client::new(&url, &token)?;
    wait_for_ready(&api).await.with_context(|| up.logs())?;
    wait_for_agent_online(&api, "local")
        .await
        .with_context(|| up.logs())?;
    let session = api.create_session("xterm").await?;
    let running = api
        .wait_for_session(
            session.id,
            SessionState::Running,
            Instant::now() + START_TIMEOUT,
        )
        .await
        .with_context(|| up.logs())?;
    let vnc = running.vnc_address.clone().context("VNC address")?;
    assert_eq!(read_rfb_banner(&vnc).await?, "RFB 003.008\n");

    // The CLI's JSON output is exactly the API object.
    let out = std::process::Command::new(common::BIN)
        .args([
            "session",
            "show",
            &session.id.to_string(),
            "--server",
            &url,
            "--token",
            &token,
            "-o",
            "json",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let fetched = serde_json::to_value(api.get_session(session.id).await?)?;
    assert_eq!(printed, fetched);

    // `agent ping` reaches the real local agent and prints its answer; an unknown agent fails.
    let ping = |agent: &str, format: &str| {
        std::process::Command::new(common::BIN)
            .args(["agent", "ping", agent, "--server", &url, "--token", &token])
            .args(["--wait", "20", "-o", format])
            .output()
    };
    let out = ping("local", "json")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pong: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(pong["status"], "completed", "{pong}");
    assert_eq!(pong["result"], serde_json::json!({ "pong": true }));
    let out = ping("local", "table")?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("agent local answered in"),
        "{said}"
    );
    let out = ping("nobody", "table")?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("not found"),
        "{said}"
    );

    api.stop_session(session.id).await?;
    api.wait_for_session(
        session.id,
        SessionState::Terminated,
        Instant::now() + START_TIMEOUT,
    )
    .await?;
    Ok(())
}

/// On a machine with a window manager (the tests install IceWM), the first `up` seeds a
/// `desktop` template that runs it, says so, and a session of it comes up; a machine with every
/// program sessions need gets no "cannot run sessions" lines.
#[tokio::test(flavor = "multi_thread")]
async fn up_offers_a_desktop_template_for_the_window_manager_it_finds() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (up, url, data) = h.up().await?;
    up.wait_for_stdout("A `desktop` template runs IceWM")
        .await
        .with_context(|| up.logs())?;
    assert!(
        !up.logs().contains("cannot run sessions yet"),
        "{}",
        up.logs()
    );
    let token = std::fs::read_to_string(data.join("admin-token"))?
        .trim()
        .to_owned();
    let api = Client::new(&url, &token)?;
    wait_for_ready(&api).await.with_context(|| up.logs())?;
    let templates = api.list_templates().await?;
    let desktop = templates
        .iter()
        .find(|t| t.name == "desktop")
        .context("no desktop template")?;
    assert_eq!(desktop.command, ["icewm-session"]);
    wait_for_agent_online(&api, "local")
        .await
        .with_context(|| up.logs())?;
    let session = api.create_session("desktop").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(|| up.logs())?;
    api.stop_session(session.id).await?;
    api.wait_for_session(
        session.id,
        SessionState::Terminated,
        Instant::now() + START_TIMEOUT,
    )
    .await?;
    Ok(())
}

/// An agent started with secrets in its environment (its key, and a variable of our own) runs a
/// session whose `env` shows none of them, nor any `STREAMSPACE_*` variable.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_sees_none_of_the_agent_s_environment() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let db = h.sqlite_url();
    let (server, url) = h.server(&db, &[]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key = api.create_agent_key("env-agent").await?.secret;
    let state = h.path("agent-state").display().to_string();
    let args = [
        "agent",
        "--server",
        &url,
        "--agent-id",
        "env-agent",
        "--runtime",
        "process",
        "--state-dir",
        &state,
    ];
    let env = [
        ("STREAMSPACE_AGENT_KEY", key.as_str()),
        ("STREAMSPACE_CANARY", "agent-only"),
    ];
    let agent = h.spawn("agent-env-agent", &args, &env)?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, "env-agent")
        .await
        .with_context(logs)?;
    let out = h.path("session-env.txt");
    api.create_template(&streamspace_proto::api::CreateTemplate {
        name: "env".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            r#"env > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 600"#.into(),
            "sh".into(),
            out.display().to_string(),
        ],
        ..Default::default()
    })
    .await?;
    let session = api.create_session("env").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    let text = wait_until(
        "the session to write its environment",
        START_TIMEOUT,
        || {
            let text = std::fs::read_to_string(&out).ok();
            async move { text }
        },
    )
    .await
    .with_context(logs)?;
    assert!(text.contains("DISPLAY=:"), "{text}");
    let leaked: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("STREAMSPACE_") || l.contains(&key) || l.starts_with("RUST_LOG"))
        .collect();
    assert!(
        leaked.is_empty(),
        "the agent's variables leaked: {leaked:?}"
    );
    api.stop_session(session.id).await?;
    Ok(())
}

/// A client acting as a new user `username` (password sign-in, with a token).
async fn new_user(api: &Client, url: &str, username: &str) -> anyhow::Result<(Client, Uuid)> {
    let password = "a long enough password 1";
    let user = api
        .create_user(&streamspace_proto::api::CreateUser {
            username: username.into(),
            password: Some(password.into()),
            ..Default::default()
        })
        .await?;
    let login = Client::new(url, "")?
        .login(&streamspace_proto::api::LoginRequest {
            username: username.into(),
            password: password.into(),
            totp: None,
            token_name: Some("e2e".into()),
        })
        .await?;
    let token = login.token.context("sign-in returns a token")?.token;
    Ok((Client::new(url, &token)?, user.id))
}

async fn running(api: &Client, id: Uuid, logs: impl Fn() -> String) -> anyhow::Result<()> {
    api.wait_for_session(id, SessionState::Running, Instant::now() + START_TIMEOUT)
        .await
        .with_context(logs)?;
    Ok(())
}

/// Polls until `path` holds `expected`.
async fn file_says(path: &std::path::Path, expected: &str) -> anyhow::Result<()> {
    wait_until(
        &format!("{} to say {expected:?}", path.display()),
        START_TIMEOUT,
        || {
            let text = std::fs::read_to_string(path).ok();
            async move { text.filter(|t| t == expected).map(|_| ()) }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_home_follows_its_user_to_the_agent_that_holds_it() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let db = h.sqlite_url();
    let (server, url) = h.server(&db, &["--heartbeat-interval", "1"]).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    let key_b = api.create_agent_key("home-b").await?.secret;
    let state_b = h.path("state-b");
    let mut agent_b = h.agent(&url, "home-b", &key_b, &state_b)?;
    wait_for_agent_online(&api, "home-b")
        .await
        .with_context(|| format!("{}\n{}", server.logs(), agent_b.logs()))?;
    // Each session records what its home held when it started, then adds a line.
    api.create_template(&streamspace_proto::api::CreateTemplate {
        name: "home".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            r#"cat "$HOME/notes.txt" > "$HOME/seen.tmp" 2>/dev/null; mv "$HOME/seen.tmp" "$HOME/seen.txt"; echo line >> "$HOME/notes.txt"; exec sleep 600"#.into(),
        ],
        persistent_home: streamspace_proto::api::HomePolicy::User,
        ..Default::default()
    })
    .await?;
    let (alice, alice_id) = new_user(&api, &url, "alice").await?;
    let (bob, bob_id) = new_user(&api, &url, "bob").await?;
    let alice_home = state_b.join("homes").join(alice_id.to_string());
    let bob_home = state_b.join("homes").join(bob_id.to_string());

    let first = alice.create_session("home").await?;
    let logs = || format!("{}\n{}", server.logs(), agent_b.logs());
    running(&alice, first.id, logs).await?;
    file_says(&alice_home.join("notes.txt"), "line\n").await?;
    file_says(&alice_home.join("seen.txt"), "").await?;

    // A second session of alice's while the first runs: the home is in use.
    let err = alice
        .create_session("home")
        .await
        .expect_err("the home is in use");
    assert_eq!(err.code(), Some("home_in_use"), "{err}");
    assert!(err.to_string().contains(&first.id.to_string()), "{err}");

    alice.stop_session(first.id).await?;
    alice
        .wait_for_session(
            first.id,
            SessionState::Terminated,
            Instant::now() + START_TIMEOUT,
        )
        .await?;
    assert!(
        alice_home.join("notes.txt").exists(),
        "stopping keeps the home"
    );

    // home-a would win the next placement (same load, smaller id): the home keeps alice on b.
    let key_a = api.create_agent_key("home-a").await?.secret;
    let agent_a = h.agent(&url, "home-a", &key_a, &h.path("state-a"))?;
    wait_for_agent_online(&api, "home-a")
        .await
        .with_context(|| agent_a.logs())?;
    let second = alice.create_session("home").await?;
    assert_eq!(second.agent_id.as_deref(), Some("home-b"), "{second:?}");
    running(&alice, second.id, || agent_b.logs()).await?;
    file_says(&alice_home.join("seen.txt"), "line\n").await?;
    file_says(&alice_home.join("notes.txt"), "line\nline\n").await?;

    // Bob's session has a home of its own, without alice's files.
    let theirs = bob.create_session("home").await?;
    assert_eq!(theirs.agent_id.as_deref(), Some("home-a"), "{theirs:?}");
    running(&bob, theirs.id, || agent_a.logs()).await?;
    let bob_home_a = h.path("state-a").join("homes").join(bob_id.to_string());
    file_says(&bob_home_a.join("seen.txt"), "").await?;
    file_says(&bob_home_a.join("notes.txt"), "line\n").await?;
    assert!(
        !bob_home.exists(),
        "bob's home is only where his session ran"
    );
    bob.stop_session(theirs.id).await?;
    alice.stop_session(second.id).await?;
    alice
        .wait_for_session(
            second.id,
            SessionState::Terminated,
            Instant::now() + START_TIMEOUT,
        )
        .await?;

    // While home-b is down, alice's sessions cannot go elsewhere.
    agent_b.terminate().await?;
    wait_until("home-b to be offline", START_TIMEOUT, || async {
        let agent = api.get_agent("home-b").await.ok()?;
        (agent.status == AgentStatus::Offline).then_some(())
    })
    .await?;
    let err = alice
        .create_session("home")
        .await
        .expect_err("the home's agent is offline");
    assert_eq!(err.code(), Some("home_agent_unavailable"), "{err}");
    assert!(err.to_string().contains("home-b"), "names the agent: {err}");

    // Deleting alice asks about her home; deleting it removes it once home-b is back.
    let err = api
        .delete_user("alice", None)
        .await
        .expect_err("a choice is needed");
    assert_eq!(err.code(), Some("home_choice_required"), "{err}");
    let _agent_b = h.agent(&url, "home-b", &key_b, &state_b)?;
    wait_for_agent_online(&api, "home-b").await?;
    api.delete_user("alice", Some(streamspace_proto::api::HomeDisposal::Delete))
        .await?;
    wait_until("alice's home to be removed", START_TIMEOUT, || {
        let gone = !alice_home.exists();
        async move { gone.then_some(()) }
    })
    .await?;
    assert!(bob_home_a.exists(), "only alice's home is removed");
    Ok(())
}
