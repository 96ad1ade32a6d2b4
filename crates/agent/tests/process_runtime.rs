//! The process runtime against real Xvnc and xterm: what a viewer sees, what `/proc` shows, and
//! what is left on disk after each action.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use streamspace_agent::runtime::{ProcessRuntime, ProcessRuntimeConfig, Runtime, SessionInfo};
use streamspace_proto::SessionState;
use streamspace_proto::api::Template;
use streamspace_testkit::vnc::read_rfb_banner;
use streamspace_testkit::wait_until;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

fn template(command: &[&str]) -> Template {
    let create = streamspace_proto::api::CreateTemplate {
        name: "test".into(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: [("STREAMSPACE_TEST".to_string(), "1".to_string())].into(),
        ..Default::default()
    };
    Template::new(create, chrono::Utc::now())
}

fn runtime(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::new(ProcessRuntimeConfig::new(dir.to_path_buf()))
}

/// The pids recorded in the session's state file.
fn recorded_pids(dir: &Path, id: Uuid) -> anyhow::Result<Vec<i32>> {
    let path = dir.join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let pids = value["processes"]
        .as_array()
        .context("state file lists processes")?
        .iter()
        .filter_map(|p| p["pid"].as_i64().and_then(|p| i32::try_from(p).ok()))
        .collect::<Vec<_>>();
    ensure!(pids.len() == 2, "Xvnc and the program are recorded: {text}");
    Ok(pids)
}

/// The X display the session's state file records.
fn recorded_display(dir: &Path, id: Uuid) -> anyhow::Result<u32> {
    let path = dir.join(format!("{id}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let display = value["display"]
        .as_u64()
        .context("state file records the display")?;
    Ok(u32::try_from(display)?)
}

/// The `/proc` state letter of `pid`, `None` once it is gone (zombies count as gone).
fn proc_state(pid: i32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = text[text.rfind(')')? + 1..].trim_start().chars().next()?;
    (state != 'Z').then_some(state)
}

/// Asserts that no lock file of `display` names the session's Xvnc. Another test's server may
/// already have claimed the display the moment it was free, so a lock naming another pid is fine.
fn assert_display_released(display: u32, xvnc: i32) {
    let [lock, socket] = lock_files(display);
    match std::fs::read_to_string(&lock) {
        Ok(owner) => assert_ne!(
            owner.trim().parse::<i32>().ok(),
            Some(xvnc),
            "{lock:?} still names the stopped Xvnc"
        ),
        Err(_) => assert!(!socket.exists(), "{socket:?} removed"),
    }
}

fn lock_files(display: u32) -> [PathBuf; 2] {
    [
        PathBuf::from(format!("/tmp/.X{display}-lock")),
        PathBuf::from(format!("/tmp/.X11-unix/X{display}")),
    ]
}

async fn wait_states(pids: &[i32], stopped: bool) -> anyhow::Result<()> {
    wait_until(
        if stopped {
            "processes in state T"
        } else {
            "processes running"
        },
        WAIT,
        || async {
            pids.iter()
                .all(|p| proc_state(*p).is_some_and(|s| (s == 'T') == stopped))
                .then_some(())
        },
    )
    .await
}

async fn started(rt: &ProcessRuntime, id: Uuid) -> anyhow::Result<SessionInfo> {
    let info = rt.start(id, &template(&["xterm"])).await?;
    ensure!(info.state == SessionState::Running, "{info:?}");
    Ok(info)
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("{path:?}"))?;
    Ok(meta.permissions().mode() & 0o7777)
}

/// The inodes of the TCP sockets listening in this network namespace.
fn listening_tcp_inodes() -> anyhow::Result<std::collections::BTreeSet<String>> {
    let mut inodes = std::collections::BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)?.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `st` 0A is LISTEN; the inode is the tenth field.
            if fields.get(3) == Some(&"0A")
                && let Some(inode) = fields.get(9)
            {
                inodes.insert((*inode).to_owned());
            }
        }
    }
    Ok(inodes)
}

/// The inodes of the sockets process `pid` holds open.
fn socket_inodes(pid: i32) -> anyhow::Result<Vec<String>> {
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = std::fs::read_link(fd?.path())?;
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_owned());
        }
    }
    Ok(inodes)
}

#[tokio::test]
async fn a_started_session_speaks_rfb_and_stop_leaves_nothing_behind() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    let id = Uuid::now_v7();
    let info = started(&rt, id).await?;
    let banner = read_rfb_banner(&info.vnc_address).await?;
    assert_eq!(banner, "RFB 003.008\n", "a viewer gets the RFB banner");
    let pids = recorded_pids(dir.path(), id)?;
    let display = recorded_display(dir.path(), id)?;
    for path in lock_files(display) {
        assert!(path.exists(), "Xvnc holds {path:?}");
    }
    assert_eq!(rt.vnc_address(id).await?, Some(info.vnc_address.clone()));

    // VNC is a Unix socket only its owner may open, in a directory only its owner may enter,
    // and Xvnc listens on no TCP port.
    let socket = PathBuf::from(
        info.vnc_address
            .strip_prefix("unix:")
            .with_context(|| format!("a Unix socket address: {}", info.vnc_address))?,
    );
    let session_dir = socket
        .parent()
        .context("the socket has a directory")?
        .to_owned();
    assert_eq!(
        session_dir,
        dir.path().join("run").join(display.to_string())
    );
    assert_eq!(mode(&session_dir)?, 0o700, "{session_dir:?}");
    assert_eq!(mode(&socket)? & 0o777, 0o600, "{socket:?}");
    let listening = listening_tcp_inodes()?;
    let xvnc_sockets = socket_inodes(pids[0])?;
    assert!(!xvnc_sockets.is_empty(), "Xvnc holds sockets");
    for inode in &xvnc_sockets {
        assert!(
            !listening.contains(inode),
            "Xvnc listens on a TCP port (socket inode {inode})"
        );
    }

    rt.stop(id).await?;
    for pid in &pids {
        assert_eq!(proc_state(*pid), None, "pid {pid} is gone after stop");
    }
    assert_display_released(display, pids[0]);
    assert!(!session_dir.exists(), "the session directory is removed");
    assert!(
        !dir.path().join(format!("{id}.json")).exists(),
        "state file removed"
    );
    assert_eq!(rt.status(id).await?, None);
    Ok(())
}

#[tokio::test]
async fn hibernate_freezes_the_session_and_wake_resumes_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    let id = Uuid::now_v7();
    let info = started(&rt, id).await?;
    let pids = recorded_pids(dir.path(), id)?;

    let hibernated = rt.hibernate(id).await?;
    assert_eq!(hibernated.state, SessionState::Hibernated);
    wait_states(&pids, true).await?;
    let again = rt.hibernate(id).await?;
    assert_eq!(
        again.state,
        SessionState::Hibernated,
        "hibernating twice is fine"
    );

    let woken = rt.wake(id).await?;
    assert_eq!(woken.state, SessionState::Running);
    assert_eq!(woken.vnc_address, info.vnc_address);
    wait_states(&pids, false).await?;
    assert_eq!(
        rt.wake(id).await?.state,
        SessionState::Running,
        "waking twice is fine"
    );
    assert_eq!(read_rfb_banner(&woken.vnc_address).await?, "RFB 003.008\n");

    // A hibernated session can be stopped too.
    rt.hibernate(id).await?;
    rt.stop(id).await?;
    for pid in &pids {
        assert_eq!(proc_state(*pid), None, "pid {pid} is gone");
    }
    Ok(())
}

#[tokio::test]
async fn start_and_stop_are_idempotent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    let id = Uuid::now_v7();
    let first = started(&rt, id).await?;
    let second = started(&rt, id).await?;
    assert_eq!(first, second, "a second start returns the running session");
    assert_eq!(rt.list().await?.len(), 1, "and does not start another");
    rt.stop(id).await?;
    rt.stop(id).await?;
    rt.stop(Uuid::now_v7()).await?;
    assert!(rt.list().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_new_runtime_re_adopts_live_sessions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let id = Uuid::now_v7();
    let (info, pids, display) = {
        let first = runtime(dir.path());
        let info = started(&first, id).await?;
        first.hibernate(id).await?;
        let display = recorded_display(dir.path(), id)?;
        (info, recorded_pids(dir.path(), id)?, display)
        // `first` is dropped here, as if the agent had exited; its sessions stay.
    };
    let second = Arc::new(runtime(dir.path()));
    let recovered = second.recover().await?;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].session_id, id);
    assert_eq!(recovered[0].state, SessionState::Hibernated);
    assert_eq!(recovered[0].vnc_address, info.vnc_address);

    let woken = second.wake(id).await?;
    assert_eq!(woken.state, SessionState::Running);
    assert_eq!(read_rfb_banner(&info.vnc_address).await?, "RFB 003.008\n");
    assert_eq!(started(&second, id).await?.vnc_address, info.vnc_address);

    second.stop(id).await?;
    for pid in &pids {
        assert_eq!(proc_state(*pid), None, "adopted pid {pid} is stopped too");
    }
    assert_display_released(display, pids[0]);
    Ok(())
}

#[tokio::test]
async fn a_session_whose_xvnc_was_killed_is_reported_failed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let id = Uuid::now_v7();
    let first = runtime(dir.path());
    started(&first, id).await?;
    let pids = recorded_pids(dir.path(), id)?;
    let display = recorded_display(dir.path(), id)?;
    let xvnc = pids[0];
    let status = std::process::Command::new("kill")
        .args(["-KILL", &xvnc.to_string()])
        .status()?;
    ensure!(status.success(), "kill -KILL {xvnc}");
    wait_until("Xvnc to be gone", WAIT, || async {
        proc_state(xvnc).is_none().then_some(())
    })
    .await?;

    let seen = first.status(id).await?.context("still held")?;
    assert_eq!(seen.state, SessionState::Failed, "{seen:?}");
    assert!(
        seen.message.as_deref().is_some_and(|m| m.contains("Xvnc")),
        "{seen:?}"
    );
    drop(first);

    let second = runtime(dir.path());
    let recovered = second.recover().await?;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].state, SessionState::Failed);
    let message = recovered[0].message.clone().unwrap_or_default();
    assert!(
        message.contains("lost while the agent was down"),
        "{message}"
    );
    assert!(
        second.list().await?.is_empty(),
        "a lost session is not held"
    );
    wait_until("xterm to be cleaned up", WAIT, || async {
        proc_state(pids[1]).is_none().then_some(())
    })
    .await?;
    assert_display_released(display, pids[0]);
    assert!(!dir.path().join(format!("{id}.json")).exists());
    Ok(())
}

#[tokio::test]
async fn a_program_that_exits_fails_the_session() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    let id = Uuid::now_v7();
    rt.start(id, &template(&["sh", "-c", "exit 0"])).await?;
    let failed = wait_until("the session to be seen as failed", WAIT, || async {
        rt.status(id)
            .await
            .ok()
            .flatten()
            .filter(|s| s.state == SessionState::Failed)
    })
    .await?;
    assert!(
        failed
            .message
            .as_deref()
            .is_some_and(|m| m.contains("program")),
        "{failed:?}"
    );
    rt.stop(id).await?;
    Ok(())
}

#[tokio::test]
async fn missing_programs_are_named_in_the_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = ProcessRuntimeConfig::new(dir.path().to_path_buf());
    config.xvnc = "/nonexistent/Xvnc".into();
    let no_xvnc = ProcessRuntime::new(config);
    let Err(e) = no_xvnc.start(Uuid::now_v7(), &template(&["xterm"])).await else {
        bail!("start without Xvnc succeeded");
    };
    assert!(
        e.to_string().contains("install tigervnc-standalone-server"),
        "{e}"
    );

    let rt = runtime(dir.path());
    let Err(e) = rt
        .start(Uuid::now_v7(), &template(&["no-such-program-xyz"]))
        .await
    else {
        bail!("start of a missing program succeeded");
    };
    assert!(e.to_string().contains("no-such-program-xyz"), "{e}");
    let Err(e) = rt.start(Uuid::now_v7(), &template(&[])).await else {
        bail!("start of an empty command succeeded");
    };
    assert!(e.to_string().contains("has no command"), "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "nothing left behind: {leftovers:?}");
    Ok(())
}

#[tokio::test]
async fn concurrent_starts_get_distinct_displays() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = Arc::new(runtime(dir.path()));
    let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let mut tasks = Vec::new();
    for id in ids {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            rt.start(id, &template(&["xterm"])).await
        }));
    }
    let mut displays = std::collections::BTreeSet::new();
    for task in tasks {
        let info = task.await??;
        assert_eq!(read_rfb_banner(&info.vnc_address).await?, "RFB 003.008\n");
        displays.insert(recorded_display(dir.path(), info.session_id)?);
    }
    assert_eq!(displays.len(), 3, "each session has its own display");
    for id in ids {
        rt.stop(id).await?;
    }
    Ok(())
}

fn start_time(pid: i32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &text[text.rfind(')').context("stat has a name")? + 1..];
    Ok(rest
        .split_whitespace()
        .nth(19)
        .context("stat has field 22")?
        .parse()?)
}

fn write_state(
    dir: &Path,
    id: Uuid,
    pgid: i32,
    processes: serde_json::Value,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let record = serde_json::json!({
        "session_id": id, "display": 999, "port": 1, "pgid": pgid,
        "processes": processes, "intent": "running",
    });
    std::fs::write(dir.join(format!("{id}.json")), record.to_string())?;
    Ok(())
}

#[tokio::test]
async fn recovery_never_signals_a_reused_pid() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let id = Uuid::now_v7();
    // The recorded pid is alive — it is this test — but started at another time: pid reuse.
    let me = std::process::id() as i32;
    let wrong = start_time(me)? + 1;
    let processes = serde_json::json!([
        { "role": "xvnc", "pid": me, "start_time": wrong },
        { "role": "program", "pid": me, "start_time": wrong },
    ]);
    write_state(dir.path(), id, me, processes)?;
    let recovered = runtime(dir.path()).recover().await?;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].state, SessionState::Failed);
    assert!(!dir.path().join(format!("{id}.json")).exists());
    // Still running: the session's cleanup did not signal an unrelated process.
    Ok(())
}

#[tokio::test]
async fn recovery_removes_a_start_that_was_interrupted() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir()?;
    let id = Uuid::now_v7();
    // Stands in for an Xvnc whose program the dead agent never got to start.
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .process_group(0)
        .spawn()?;
    let pid = child.id() as i32;
    let processes =
        serde_json::json!([{ "role": "xvnc", "pid": pid, "start_time": start_time(pid)? }]);
    write_state(dir.path(), id, pid, processes)?;
    let recovered = runtime(dir.path()).recover().await?;
    assert!(
        recovered.is_empty(),
        "an unfinished start is not reported: {recovered:?}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(!status.success(), "the half-started session was terminated");
    assert!(!dir.path().join(format!("{id}.json")).exists());
    Ok(())
}

/// Pids of the live Xvnc servers on display `:{display}`, from `/proc`.
fn xvnc_on_display(display: u32) -> Vec<i32> {
    let wanted = format!(":{display}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            let program = args.next()?;
            let is_xvnc = program.rsplit('/').next() == Some("Xvnc");
            (is_xvnc && args.any(|a| a == wanted) && proc_state(pid).is_some()).then_some(pid)
        })
        .collect()
}

/// A display from `first` up that no living X server holds: none, or a stale lock of a server
/// that was killed (the Xvnc started on it removes that, as X servers do).
fn free_display(first: u32) -> anyhow::Result<u32> {
    let stale_or_none = |n: u32| match std::fs::read_to_string(&lock_files(n)[0]) {
        Ok(text) => text
            .trim()
            .parse::<i32>()
            .is_ok_and(|pid| proc_state(pid).is_none()),
        Err(_) => !lock_files(n)[1].exists(),
    };
    (first..first + 200)
        .find(|n| stale_or_none(*n))
        .context("no free X display")
}

#[tokio::test]
async fn recovery_ends_a_start_cut_short_and_the_session_then_runs_once() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir()?;
    let id = Uuid::now_v7();
    // What an agent killed in the middle of a start leaves: a record still `launching` that
    // names a live Xvnc, and the program already started in Xvnc's process group but not yet
    // recorded.
    let display = free_display(700)?;
    let port = streamspace_testkit::free_port()?;
    let mut xvnc = std::process::Command::new("Xvnc")
        .arg(format!(":{display}"))
        .args([
            "-rfbport",
            &port.to_string(),
            "-localhost",
            "-SecurityTypes",
            "None",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let xvnc_pid = xvnc.id() as i32;
    let address = format!("127.0.0.1:{port}");
    wait_until("the orphan Xvnc to answer", WAIT, || async {
        read_rfb_banner(&address).await.ok()
    })
    .await?;
    let mut program = std::process::Command::new("xterm")
        .env("DISPLAY", format!(":{display}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(xvnc_pid)
        .spawn()?;
    let record = serde_json::json!({
        "session_id": id, "display": display, "port": port, "pgid": xvnc_pid,
        "processes": [{ "role": "xvnc", "pid": xvnc_pid, "start_time": start_time(xvnc_pid)? }],
        "intent": "launching",
    });
    std::fs::write(dir.path().join(format!("{id}.json")), record.to_string())?;
    assert_eq!(xvnc_on_display(display), vec![xvnc_pid]);

    let rt = runtime(dir.path());
    let recovered = rt.recover().await?;
    assert!(
        recovered.is_empty(),
        "an unfinished start is not reported: {recovered:?}"
    );
    let program_pid = program.id() as i32;
    wait_until(
        "the orphan Xvnc and the program to be ended",
        WAIT,
        || async {
            [xvnc_pid, program_pid]
                .iter()
                .all(|p| proc_state(*p).is_none())
                .then_some(())
        },
    )
    .await?;
    xvnc.wait()?;
    program.wait()?;
    assert!(xvnc_on_display(display).is_empty());
    assert_display_released(display, xvnc_pid);
    assert!(!dir.path().join(format!("{id}.json")).exists());

    // The start command, delivered again, starts the session once.
    started(&rt, id).await?;
    let now = recorded_display(dir.path(), id)?;
    let servers = xvnc_on_display(now);
    assert_eq!(servers.len(), 1, "one Xvnc for the session: {servers:?}");
    assert_eq!(servers[0], recorded_pids(dir.path(), id)?[0]);
    // The display the orphan held is free again, so a session of another test running at the
    // same time may already have taken it: the orphan's end is proven above by its pid, not by
    // the display staying empty. So is the stop's, for the same reason.
    rt.stop(id).await?;
    assert!(
        !xvnc_on_display(now).contains(&servers[0]),
        "the session's Xvnc outlived its stop"
    );
    Ok(())
}

/// Connects to the session's VNC socket and speaks RFB 3.8 up to the list of security types.
async fn security_types(socket: &Path) -> anyhow::Result<(tokio::net::UnixStream, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    let mut banner = [0u8; 12];
    s.read_exact(&mut banner).await?;
    ensure!(&banner == b"RFB 003.008\n", "{banner:?}");
    s.write_all(b"RFB 003.008\n").await?;
    let n = s.read_u8().await?;
    let mut types = vec![0u8; usize::from(n)];
    s.read_exact(&mut types).await?;
    Ok((s, types))
}

/// The security result after the client's last word: `None` if the server just hung up.
async fn security_result(s: &mut tokio::net::UnixStream) -> Option<u32> {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(WAIT, s.read_u32()).await.ok()?.ok()
}

#[tokio::test]
async fn only_the_agent_knows_the_password_a_session_s_vnc_server_asks_for() -> anyhow::Result<()> {
    use streamspace_agent::runtime::vnc::auth::{AuthError, VncPassword, authenticate};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    let id = Uuid::now_v7();
    let info = started(&rt, id).await?;
    let socket = PathBuf::from(
        info.vnc_address
            .strip_prefix("unix:")
            .context("a Unix socket")?,
    );

    // A client that asks for no authentication is refused: VNC authentication is all there is.
    let (mut raw, types) = security_types(&socket).await?;
    assert_eq!(types, [2], "only VNC authentication is offered");
    raw.write_all(&[1]).await?;
    let result = security_result(&mut raw).await;
    assert!(result.is_none_or(|r| r != 0), "None refused: {result:?}");

    // A client that guesses the password is refused, and its failure locks nobody out.
    for _ in 0..6 {
        let mut guess = tokio::net::UnixStream::connect(&socket).await?;
        let Err(AuthError::Failed(_)) = authenticate(&mut guess, &VncPassword::random()).await
        else {
            bail!("a random password was not refused");
        };
    }

    // The agent's password opens the session: after `ClientInit`, the desktop's `ServerInit`.
    let target = rt.vnc_target(id).await?.context("a live session")?;
    assert_eq!(target.address, info.vnc_address);
    let password = target.password.context("the session has a password")?;
    let mut vnc = tokio::net::UnixStream::connect(&socket).await?;
    authenticate(&mut vnc, &password).await?;
    vnc.write_all(&[1]).await?;
    let (width, height) = (vnc.read_u16().await?, vnc.read_u16().await?);
    assert_eq!((width, height), (1280, 800), "the session's framebuffer");

    // The agent's copy is private to it; Xvnc's copy lives in the private session directory.
    let copy = dir.path().join(format!("{id}.vncpasswd"));
    assert_eq!(mode(&copy)?, 0o600, "{copy:?}");
    assert_eq!(
        VncPassword::from_vncpasswd(&std::fs::read(&copy)?),
        Some(password)
    );
    rt.stop(id).await?;
    assert!(!copy.exists(), "the password goes with the session");
    Ok(())
}

#[tokio::test]
async fn a_session_starts_with_a_clean_environment() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    let id = Uuid::now_v7();
    let out = dir.path().join("env.txt");
    let create = streamspace_proto::api::CreateTemplate {
        name: "env".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            r#"env > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 600"#.into(),
            "sh".into(),
            out.display().to_string(),
        ],
        env: [("GREETING".to_string(), "hello".to_string())].into(),
        ..Default::default()
    };
    rt.start(id, &Template::new(create, chrono::Utc::now()))
        .await?;
    let text = wait_until("the session to write its environment", WAIT, || async {
        std::fs::read_to_string(&out).ok()
    })
    .await?;
    let vars: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    let names: Vec<&str> = vars.keys().copied().collect();
    // The documented set, the template's own, and PWD (which the starting shell sets): none of
    // this test process's variables (CARGO_*, NEXTEST_*, RUST_*…).
    assert_eq!(
        names,
        [
            "DISPLAY",
            "GREETING",
            "HOME",
            "LANG",
            "LOGNAME",
            "PATH",
            "PWD",
            "SHELL",
            "USER",
            "XAUTHORITY"
        ],
        "{text}"
    );
    assert_eq!(vars["GREETING"], "hello");
    let display = recorded_display(dir.path(), id)?;
    assert_eq!(vars["DISPLAY"], format!(":{display}"));
    assert_eq!(vars["USER"], "root", "the tests run as root");
    rt.stop(id).await?;
    Ok(())
}

/// `Uid:` and `Groups:` of `/proc/PID/status`.
fn ids(pid: i32) -> anyhow::Result<(String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .with_context(|| format!("{name} in the status of {pid}"))
    };
    Ok((field("Uid:")?, field("Groups:")?))
}

#[tokio::test]
async fn a_session_run_as_another_user_reaches_neither_the_agent_nor_other_sessions()
-> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use streamspace_agent::runtime::vnc::auth::authenticate;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "this test switches users, so it runs as root (as the tests do here)"
    );
    let tmp = tempfile::tempdir()?;
    // The session's user must be able to pass through to its own directory.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;

    // Another session, run as the agent's user (root here).
    let other_state = tmp.path().join("other");
    let other = runtime(&other_state);
    let other_id = Uuid::now_v7();
    let other_info = started(&other, other_id).await?;
    let other_socket = PathBuf::from(
        other_info
            .vnc_address
            .strip_prefix("unix:")
            .context("a socket")?,
    );
    let other_dir = other_socket.parent().context("a directory")?.to_owned();

    let state = tmp.path().join("state");
    let mut config = ProcessRuntimeConfig::new(state.clone());
    config.run_dir = tmp.path().join("run");
    config.run_as = Some("nobody".into());
    let rt = ProcessRuntime::new(config);
    let id = Uuid::now_v7();
    let agent_environ = format!("/proc/{}/environ", std::process::id());
    let probes = [
        state.join(format!("{id}.json")),
        state.join(format!("{id}.vncpasswd")),
        PathBuf::from(&agent_environ),
        other_state.join(format!("{other_id}.vncpasswd")),
        other_dir.clone(),
        other_dir.join("vncpasswd"),
        other_socket.clone(),
    ];
    let script = r#"for f in "$@"; do
        if [ -d "$f" ]; then ls "$f" >/dev/null 2>&1 && echo "open $f" || echo "closed $f"
        else cat "$f" >/dev/null 2>&1 && echo "open $f" || echo "closed $f"; fi
    done; echo "probe done"; exec sleep 600"#;
    let mut command = vec!["sh", "-c", script, "probe"];
    let probe_args: Vec<String> = probes.iter().map(|p| p.display().to_string()).collect();
    command.extend(probe_args.iter().map(String::as_str));
    let info = rt.start(id, &template(&command)).await?;
    ensure!(info.state == SessionState::Running, "{info:?}");

    let log = state.join(format!("{id}.log"));
    let text = wait_until("the session's probes", WAIT, || async {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("probe done"))
    })
    .await?;
    for probe in &probe_args {
        assert!(
            text.contains(&format!("closed {probe}\n")),
            "the session reaches {probe}:\n{text}"
        );
    }

    // Xvnc and the program run as nobody, with no supplementary group (root's are dropped).
    for pid in recorded_pids(&state, id)? {
        let (uid, groups) = ids(pid)?;
        assert_eq!(uid, "65534 65534 65534 65534", "pid {pid}");
        assert_eq!(groups, "", "pid {pid}");
    }
    // Its directory is the user's, closed to others; the agent's state stays the agent's.
    let socket = PathBuf::from(info.vnc_address.strip_prefix("unix:").context("a socket")?);
    let dir = socket.parent().context("a directory")?;
    assert_eq!(mode(dir)?, 0o700);
    assert_eq!(
        mode(&tmp.path().join("run"))?,
        0o711,
        "passable, not listable"
    );
    assert_eq!(mode(&state)?, 0o700);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(dir)?.uid(), 65534);
    assert_eq!(std::fs::metadata(&state)?.uid(), 0);

    // And the agent still opens it for viewers.
    let target = rt.vnc_target(id).await?.context("a live session")?;
    let mut vnc = tokio::net::UnixStream::connect(&socket).await?;
    authenticate(&mut vnc, &target.password.context("a password")?).await?;
    vnc.write_all(&[1]).await?;
    assert_eq!((vnc.read_u16().await?, vnc.read_u16().await?), (1280, 800));

    rt.stop(id).await?;
    other.stop(other_id).await?;
    assert!(!dir.exists(), "the session directory is removed");
    Ok(())
}

/// Opens an X11 connection to `display` presenting `cookie` (or nothing) and returns whether
/// the server accepted it (X11 connection setup, little-endian).
async fn x11_accepts(display: u32, cookie: Option<&[u8]>) -> anyhow::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut x = tokio::net::UnixStream::connect(format!("/tmp/.X11-unix/X{display}")).await?;
    let (name, data): (&[u8], &[u8]) = match cookie {
        Some(cookie) => (b"MIT-MAGIC-COOKIE-1", cookie),
        None => (b"", b""),
    };
    let pad = |n: usize| vec![0u8; (4 - n % 4) % 4];
    let mut setup = vec![b'l', 0, 11, 0, 0, 0];
    setup.extend_from_slice(&u16::try_from(name.len())?.to_le_bytes());
    setup.extend_from_slice(&u16::try_from(data.len())?.to_le_bytes());
    setup.extend_from_slice(&[0, 0]);
    setup.extend_from_slice(name);
    setup.extend(pad(name.len()));
    setup.extend_from_slice(data);
    setup.extend(pad(data.len()));
    x.write_all(&setup).await?;
    // 0: failed, 1: success, 2: authenticate further.
    Ok(x.read_u8().await? == 1)
}

#[tokio::test]
async fn only_the_session_s_program_may_use_its_x_display() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    let id = Uuid::now_v7();
    let info = started(&rt, id).await?;
    let display = recorded_display(dir.path(), id)?;
    assert!(
        !x11_accepts(display, None).await?,
        "an X client without the session's cookie is refused"
    );
    assert!(
        !x11_accepts(display, Some(&[0u8; 16])).await?,
        "or a wrong one"
    );
    let socket = info.vnc_address.strip_prefix("unix:").context("a socket")?;
    let xauthority = Path::new(socket).with_file_name("Xauthority");
    assert_eq!(mode(&xauthority)? & 0o777, 0o600);
    let file = std::fs::read(&xauthority)?;
    let cookie = &file[file.len() - 16..];
    assert!(
        x11_accepts(display, Some(cookie)).await?,
        "the cookie opens it"
    );
    rt.stop(id).await?;
    Ok(())
}

/// A template whose program writes `$HOME` and `$PWD` to `out` and then appends `line` to
/// `$HOME/notes.txt`, then waits.
fn user_home_template(out: &Path, line: &str) -> Template {
    let create = streamspace_proto::api::CreateTemplate {
        name: "home".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            r#"echo "$2" >> "$HOME/notes.txt" && echo "$HOME $PWD" > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 600"#.into(),
            "sh".into(),
            out.display().to_string(),
            line.into(),
        ],
        persistent_home: streamspace_proto::api::HomePolicy::User,
        ..Default::default()
    };
    Template::new(create, chrono::Utc::now())
}

#[tokio::test]
async fn a_user_home_follows_its_user_across_sessions_and_only_that_user() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(dir.path());
    assert!(rt.user_homes(), "the process runtime keeps user homes");
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let home = dir.path().join("homes").join(alice.to_string());

    // A plain start of a user-home template is refused: it needs the owner.
    let out = dir.path().join("first.txt");
    let err = rt
        .start(Uuid::now_v7(), &user_home_template(&out, "x"))
        .await
        .expect_err("a user-home template needs its owner");
    assert!(err.to_string().contains("persistent_home: user"), "{err}");

    let first = Uuid::now_v7();
    rt.start_with_user_home(first, &user_home_template(&out, "one"), alice)
        .await?;
    let seen = wait_until("the first session to report its home", WAIT, || async {
        std::fs::read_to_string(&out).ok()
    })
    .await?;
    let expected = format!("{0} {0}", home.display());
    assert_eq!(seen.trim(), expected, "HOME and working directory");
    assert_eq!(mode(&home)?, 0o700, "a user home is private");
    rt.stop(first).await?;
    assert!(home.join("notes.txt").exists(), "stopping keeps the home");

    let out = dir.path().join("second.txt");
    let second = Uuid::now_v7();
    rt.start_with_user_home(second, &user_home_template(&out, "two"), alice)
        .await?;
    wait_until("the second session to start", WAIT, || async {
        out.exists().then_some(())
    })
    .await?;
    assert_eq!(
        std::fs::read_to_string(home.join("notes.txt"))?,
        "one\ntwo\n",
        "the next session of the same user finds what the first wrote"
    );
    // A file carried into a session that mounts the user home lands in that home.
    let folder = rt.transfer_folder(second).await?;
    let mut upload = folder
        .upload("carried.txt", Uuid::now_v7())
        .await
        .map_err(|f| anyhow::anyhow!("{}: {}", f.code, f.message))?;
    upload
        .write(b"carried\n")
        .await
        .map_err(|f| anyhow::anyhow!("{}: {}", f.code, f.message))?;
    upload
        .commit()
        .await
        .map_err(|f| anyhow::anyhow!("{}: {}", f.code, f.message))?;
    assert_eq!(
        std::fs::read_to_string(home.join("Transfers").join("carried.txt"))?,
        "carried\n"
    );

    let out = dir.path().join("bob.txt");
    let other = Uuid::now_v7();
    rt.start_with_user_home(other, &user_home_template(&out, "bob"), bob)
        .await?;
    wait_until("the other user's session to start", WAIT, || async {
        out.exists().then_some(())
    })
    .await?;
    let bob_home = dir.path().join("homes").join(bob.to_string());
    assert_eq!(
        std::fs::read_to_string(bob_home.join("notes.txt"))?,
        "bob\n",
        "another user's session has its own home, without the first user's files"
    );
    let listing = rt
        .transfer_folder(other)
        .await?
        .list()
        .await
        .map_err(|f| anyhow::anyhow!("{}: {}", f.code, f.message))?;
    assert!(
        listing.entries.is_empty(),
        "the other user's transfer folder is their own: {listing:?}"
    );
    rt.stop(second).await?;
    rt.stop(other).await?;

    rt.delete_user_home(alice).await?;
    assert!(!home.exists(), "deleting the user home removes it");
    rt.delete_user_home(alice).await?;
    assert!(bob_home.exists(), "only that user's home is removed");
    Ok(())
}
