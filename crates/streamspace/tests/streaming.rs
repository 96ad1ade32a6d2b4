//! Viewer streams end to end: a real `streamspace server` process, a real agent, real Xvnc (or,
//! for the bulk-transfer test, an in-process agent whose test runtime points sessions at local
//! TCP targets), and viewers that open the browser WebSocket exactly as noVNC does.

#[path = "streaming/clipboard.rs"]
mod clipboard;
#[path = "streaming/closing.rs"]
mod closing;
mod common;
#[path = "streaming/recording.rs"]
mod recording;
#[path = "streaming/replicas.rs"]
mod replicas;
#[path = "streaming/sharing.rs"]
mod sharing;
#[path = "streaming/targets.rs"]
mod targets;
#[path = "streaming/tls.rs"]
mod tls;
#[path = "streaming/updates.rs"]
mod updates;
#[path = "streaming/users.rs"]
mod users;
#[path = "streaming/viewer.rs"]
mod viewer;

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use common::{ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready};
use streamspace_client::Client;
use streamspace_proto::api::SessionState;
use streamspace_testkit::wait_until;
use viewer::Rfb;

const START_TIMEOUT: Duration = Duration::from_secs(40);

/// A server process on a fresh SQLite database; its URL and API client.
async fn server(h: &mut Harness, extra: &[&str]) -> anyhow::Result<(Proc, String, Client)> {
    let db = h.sqlite_url();
    let mut args = vec!["--heartbeat-interval", "1"];
    args.extend_from_slice(extra);
    let (server, url) = h.server(&db, &args).await?;
    let api = Client::new(&url, ADMIN_TOKEN)?;
    wait_for_ready(&api).await.with_context(|| server.logs())?;
    Ok((server, url, api))
}

/// Server and agent processes with the process runtime (real Xvnc).
async fn platform(h: &mut Harness) -> anyhow::Result<(Proc, Proc, String, Client)> {
    let (server, url, api) = server(h, &[]).await?;
    let key = api.create_agent_key("stream-agent").await?;
    let state_dir = h.path("agent-state");
    let agent = h.agent(&url, "stream-agent", &key.secret, &state_dir)?;
    wait_for_agent_online(&api, "stream-agent")
        .await
        .with_context(|| format!("{}\n{}", server.logs(), agent.logs()))?;
    Ok((server, agent, url, api))
}

/// `streamspace session connect ID`: waits for running, prints the viewer URL.
async fn cli_connect(url: &str, id: uuid::Uuid) -> anyhow::Result<String> {
    let (url, id) = (url.to_owned(), id.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::BIN)
            .args([
                "session",
                "connect",
                &id,
                "--timeout",
                "40",
                "--server",
                &url,
            ])
            .args(["--token", ADMIN_TOKEN])
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    anyhow::ensure!(
        output.status.success(),
        "session connect failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// Sockets a process holds open (TCP and Unix): the tunnel's resources on each side.
pub fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

async fn wait_for_sockets(what: &str, pid: u32, want: usize) -> anyhow::Result<()> {
    wait_until(
        &format!("{what} to hold {want} sockets"),
        Duration::from_secs(20),
        || async move { (sockets(pid) == want).then_some(()) },
    )
    .await
    .with_context(|| format!("{what} holds {} sockets", sockets(pid)))
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_speak_rfb_with_a_real_session_through_the_tunnel() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, agent, url, api) = platform(&mut h).await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let session = api.create_session("xterm").await?;

    // The CLI waits for `running` (the VNC server answers) and prints the URL to open.
    let viewer_url = cli_connect(&url, session.id).await.with_context(logs)?;
    assert!(
        viewer_url.starts_with("ws://")
            && viewer_url.contains(&format!("/api/v1/sessions/{}/vnc?token=ssv_", session.id)),
        "session connect prints the viewer URL: {viewer_url}"
    );
    assert_eq!(
        api.get_session(session.id).await?.state,
        SessionState::Running
    );

    // Stock noVNC offers no subprotocol; websockify clients offer `binary`. Both connect, at
    // the same time, to the same session.
    let (plain, none) = viewer::open(&viewer_url, None).await.with_context(logs)?;
    assert_eq!(
        none, None,
        "no subprotocol is answered when none is offered"
    );
    let (binary, answered) = viewer::open(&viewer_url, Some("binary"))
        .await
        .with_context(logs)?;
    assert_eq!(
        answered.as_deref(),
        Some("binary"),
        "`binary` is answered when offered"
    );

    let mut plain = Rfb::new(plain);
    let (w, h_px) = plain.handshake_to_first_update().await.with_context(logs)?;
    assert_eq!((w, h_px), (1280, 800), "the session's framebuffer size");
    let mut binary = Rfb::new(binary);
    assert_eq!(
        binary.read_exact(12).await.with_context(logs)?,
        b"RFB 003.008\n"
    );

    // A second token from the API opens another viewer too.
    let info = api.connect_session(session.id).await?;
    assert!(info.expires_at > Utc::now());
    assert_eq!(
        info.url.rsplit_once("token=").map(|(_, t)| t),
        Some(info.token.as_str())
    );
    let (third, _) = viewer::open(&info.url, None).await?;
    assert_eq!(Rfb::new(third).read_exact(12).await?, b"RFB 003.008\n");

    // The agent carried all three as raw streams (answering Xvnc's password itself).
    let raw = r#"streamspace_tunnel_data_connections_total{transport="raw"}"#;
    assert_eq!(metric(&url, raw).await, Some(3.0), "{}", logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_told_to_use_websocket_streams_never_asks_for_a_raw_one() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, url, api) = server(&mut h, &[]).await?;
    let key = api.create_agent_key("ws-agent").await?;
    let state_dir = h.path("agent-state");
    let agent = h.agent_with(
        &url,
        "ws-agent",
        &key.secret,
        &state_dir,
        &["--websocket-streams"],
    )?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, "ws-agent")
        .await
        .with_context(logs)?;
    let session = api.create_session("xterm").await?;
    let viewer_url = cli_connect(&url, session.id).await.with_context(logs)?;
    let (socket, _) = viewer::open(&viewer_url, None).await.with_context(logs)?;
    let mut rfb = Rfb::new(socket);
    let (w, h_px) = rfb.handshake_to_first_update().await.with_context(logs)?;
    assert_eq!((w, h_px), (1280, 800));
    let websocket = r#"streamspace_tunnel_data_connections_total{transport="websocket"}"#;
    let raw = r#"streamspace_tunnel_data_connections_total{transport="raw"}"#;
    assert_eq!(metric(&url, websocket).await, Some(1.0), "{}", logs());
    assert_eq!(metric(&url, raw).await, None, "{}", logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_a_session_closes_its_viewers_and_tokens_are_refused() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, agent, url, api) = platform(&mut h).await?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    let a = api.create_session("xterm").await?;
    let b = api.create_session("xterm").await?;
    for id in [a.id, b.id] {
        api.wait_for_session(id, SessionState::Running, Instant::now() + START_TIMEOUT)
            .await
            .with_context(logs)?;
    }
    let base = (sockets(server.pid()), sockets(agent.pid()));
    let token_a = api.connect_session(a.id).await?;

    let (ws, _) = viewer::open(&token_a.url, None).await.with_context(logs)?;
    let mut view = Rfb::new(ws);
    assert_eq!(view.read_exact(12).await?, b"RFB 003.008\n");
    assert_eq!(tunnel_gauge(&url).await, Some(1.0), "one stream is open");
    assert!(
        sockets(server.pid()) >= base.0 + 2 && sockets(agent.pid()) >= base.1 + 2,
        "an open stream holds the viewer's and the data connection on the server, the data and \
         the VNC connection on the agent"
    );

    api.stop_session(a.id).await?;
    let code = viewer::close_code(&mut view.ws, START_TIMEOUT)
        .await
        .with_context(logs)?;
    assert_eq!(code, 1000, "a stopped session closes its viewers cleanly");
    wait_until(
        "the server's stream gauge to drop to 0",
        START_TIMEOUT,
        || async { (tunnel_gauge(&url).await == Some(0.0)).then_some(()) },
    )
    .await
    .with_context(logs)?;
    wait_for_session_gone(&api, a.id).await.with_context(logs)?;
    wait_for_sockets("the server", server.pid(), base.0)
        .await
        .with_context(logs)?;
    wait_for_sockets("the agent", agent.pid(), base.1)
        .await
        .with_context(logs)?;

    // Tokens: after the session ended, for another session, missing, forged, expired.
    assert_eq!(
        viewer::refusal(&token_a.url).await?,
        (403, "session_ended".into())
    );
    let token_b = api.connect_session(b.id).await?;
    let wrong = token_b.url.replace(&b.id.to_string(), &a.id.to_string());
    assert_eq!(
        viewer::refusal(&wrong).await?,
        (403, "wrong_session".into())
    );
    let bare = token_b
        .url
        .split_once('?')
        .map_or(String::new(), |(u, _)| u.to_owned());
    assert_eq!(viewer::refusal(&bare).await?, (401, "unauthorized".into()));
    let forged = format!("{}x", token_b.url);
    assert_eq!(
        viewer::refusal(&forged).await?,
        (401, "invalid_token".into())
    );
    assert!(
        api.connect_session(a.id).await.is_err(),
        "no token is issued for an ended session"
    );

    // A second replica on the same database issues one-second tokens; this replica checks them.
    let db = h.sqlite_url();
    let replica_b = h.spawn(
        "server-b",
        &["server", "--database-url", &db, "--listen", "127.0.0.1:0"],
        &[
            ("STREAMSPACE_REPLICA_ID", "e2e-b"),
            ("STREAMSPACE_VIEWER_TOKEN_TTL", "1"),
        ],
    )?;
    let url_b = replica_b.server_url().await?;
    let short = Client::new(&url_b, ADMIN_TOKEN)?
        .connect_session(b.id)
        .await
        .with_context(|| replica_b.logs())?;
    let on_a = short.url.replace(
        &url_b.replace("http://", "ws://"),
        &url.replace("http://", "ws://"),
    );
    wait_until(
        "the short token to expire",
        Duration::from_secs(10),
        || async { (Utc::now() > short.expires_at).then_some(()) },
    )
    .await?;
    assert_eq!(viewer::refusal(&on_a).await?, (401, "token_expired".into()));
    Ok(())
}

/// `streamspace_tunnel_streams` from the server's `/metrics`.
async fn tunnel_gauge(url: &str) -> Option<f64> {
    metric(url, "streamspace_tunnel_streams").await
}

/// The sample `series` (a metric's name with its labels, as exposed) from `/metrics`.
async fn metric(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

async fn wait_for_session_gone(api: &Client, id: uuid::Uuid) -> anyhow::Result<()> {
    api.wait_for_session(id, SessionState::Terminated, Instant::now() + START_TIMEOUT)
        .await?;
    Ok(())
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

const BULK_BYTES: usize = 100 * 1024 * 1024;
const BULK_CHUNK: usize = 64 * 1024;
/// Far below what the bulk transfer would cost if anything buffered it.
const RSS_GROWTH_LIMIT_KIB: u64 = 48 * 1024;

fn pattern(offset: usize) -> u8 {
    u8::try_from(offset % 251).unwrap_or(0)
}

/// Sends `BULK_BYTES` through an echo session and checks every byte that comes back.
async fn bulk_echo(ws: viewer::Ws) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut tx, mut rx) = ws.split();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < BULK_BYTES {
            let chunk: Vec<u8> = (sent..sent + BULK_CHUNK).map(pattern).collect();
            tx.send(Message::binary(chunk)).await?;
            sent += BULK_CHUNK;
        }
        anyhow::Ok(tx)
    });
    let mut received = 0;
    while received < BULK_BYTES {
        let frame = tokio::time::timeout(Duration::from_secs(30), rx.next())
            .await
            .context("the echo stream stalled")?;
        match frame {
            Some(Ok(Message::Binary(bytes))) => {
                for (i, b) in bytes.iter().enumerate() {
                    anyhow::ensure!(*b == pattern(received + i), "byte {} differs", received + i);
                }
                received += bytes.len();
            }
            Some(Ok(Message::Close(f))) => {
                anyhow::bail!("echo stream closed after {received} bytes: {f:?}")
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("echo stream failed after {received} bytes: {e}"),
            None => anyhow::bail!("echo stream ended after {received} bytes"),
        }
    }
    let _tx = writer.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_viewer_is_closed_without_slowing_another_viewer() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, url, api) = server(
        &mut h,
        &["--viewer-send-timeout", "1", "--viewer-close-grace", "120"],
    )
    .await?;
    let firehose = targets::Firehose::start().await?;
    let echo = targets::echo().await?;
    let runtime = std::sync::Arc::new(targets::TargetRuntime::new([firehose.addr.clone(), echo]));
    let key = api.create_agent_key("bulk-agent").await?;
    let config = streamspace_agent::AgentConfig::new(
        vec![url.clone()],
        "bulk-agent",
        key.secret,
        h.path("bulk-agent"),
    );
    let stop_agent = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(streamspace_agent::run_with_runtime(
        config,
        runtime,
        stop_agent.clone(),
    ));
    wait_for_agent_online(&api, "bulk-agent")
        .await
        .with_context(|| server.logs())?;
    let stalled_session = api.create_session("xterm").await?;
    api.wait_for_session(
        stalled_session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await?;
    let bulk_session = api.create_session("xterm").await?;
    api.wait_for_session(
        bulk_session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await?;

    let me = std::process::id();
    let before = (rss_kib(server.pid())?, rss_kib(me)?);
    // This viewer never reads: the firehose behind it fills every buffer on the way.
    let (mut stalled, _) = viewer::open(&api.connect_session(stalled_session.id).await?.url, None)
        .await
        .with_context(|| server.logs())?;
    let (bulk, _) = viewer::open(&api.connect_session(bulk_session.id).await?.url, None).await?;
    bulk_echo(bulk).await.with_context(|| server.logs())?;
    // Every byte of the echo was counted on its way in and on its way back.
    for direction in ["to_session", "to_viewer"] {
        let series = format!("streamspace_tunnel_bytes_total{{direction=\"{direction}\"}}");
        let relayed = metric(&url, &series).await.unwrap_or(0.0);
        assert!(
            relayed >= BULK_BYTES as f64,
            "{series} is {relayed} after {BULK_BYTES} bytes each way"
        );
    }

    // The stalled stream was torn down on the agent's side (its firehose connection ended)...
    wait_until(
        "the stalled stream's VNC connection to end",
        START_TIMEOUT,
        || async { (firehose.ended() == 1).then_some(()) },
    )
    .await
    .with_context(|| server.logs())?;
    let after = (rss_kib(server.pid())?, rss_kib(me)?);
    // ...and the viewer, once it reads again, finds the close frame: 1013, try again later.
    let code = viewer::close_code(&mut stalled, START_TIMEOUT).await?;
    assert_eq!(
        code, 1013,
        "a viewer that stops reading is closed with 1013"
    );

    let growth = (
        after.0.saturating_sub(before.0),
        after.1.saturating_sub(before.1),
    );
    eprintln!("RSS in KiB of (server, agent + viewers): before {before:?}, after {after:?}");
    assert!(
        growth.0 < RSS_GROWTH_LIMIT_KIB && growth.1 < RSS_GROWTH_LIMIT_KIB,
        "memory stays bounded while 100 MiB pass and a viewer stalls: server grew {} KiB, \
         agent (this process) grew {} KiB",
        growth.0,
        growth.1
    );
    stop_agent.cancel();
    agent.await??;
    Ok(())
}

/// `--run-as nobody`: the agent (root, as the tests run) starts Xvnc and the program as nobody,
/// and viewers still reach the desktop through the tunnel, which answers the session's VNC
/// password for them.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_run_as_another_user_streams_through_the_tunnel() -> anyhow::Result<()> {
    let mut h = common::harness()?;
    let (server, url, api) = server(&mut h, &[]).await?;
    // The id holds the harness's tag: the sessions' directories are under /run, outside the
    // harness's own, and the harness finds their processes by the tag in Xvnc's command line.
    let agent_id = format!("runas-{}", h.tag);
    let key = api.create_agent_key(&agent_id).await?;
    let state_dir = h.path("agent-state");
    let agent = h.agent_with(
        &url,
        &agent_id,
        &key.secret,
        &state_dir,
        &["--run-as", "nobody"],
    )?;
    let logs = || format!("{}\n{}", server.logs(), agent.logs());
    wait_for_agent_online(&api, &agent_id)
        .await
        .with_context(logs)?;
    let session = api.create_session("xterm").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    let xvnc = h.xvnc_processes();
    anyhow::ensure!(xvnc.len() == 1, "one Xvnc: {xvnc:?}\n{}", logs());
    let status = std::fs::read_to_string(format!("/proc/{}/status", xvnc[0].0))?;
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    assert_eq!(
        uid.split_whitespace().nth(1),
        Some("65534"),
        "Xvnc runs as nobody: {uid}"
    );

    let info = api.connect_session(session.id).await?;
    let (ws, _) = viewer::open(&info.url, None).await.with_context(logs)?;
    let (w, h_px) = Rfb::new(ws)
        .handshake_to_first_update()
        .await
        .with_context(logs)?;
    assert_eq!((w, h_px), (1280, 800));
    let xterm = streamspace_testkit::tagged::programs_of(&h.tag, h.dir.path(), "xterm");
    assert_eq!(xterm.len(), 1, "the terminal still runs: {xterm:?}");

    api.stop_session(session.id).await?;
    api.wait_for_session(
        session.id,
        SessionState::Terminated,
        Instant::now() + START_TIMEOUT,
    )
    .await
    .with_context(logs)?;
    let run_dir = format!("/run/streamspace/agent-{agent_id}");
    let _ = std::fs::remove_dir(&run_dir);
    Ok(())
}
