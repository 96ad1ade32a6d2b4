//! Controlling a session's processes as one group: spawning them so they outlive the agent,
//! signalling the group safely, and ending it (politely, then firmly).
//!
//! Every process is spawned *gated*: a tiny shell that waits on a pipe from the agent before it
//! `exec`s the real program. The agent records the pid first and opens the gate second, so an
//! agent killed at any moment of a start leaves either a recorded process (which the next agent
//! finds and ends) or a shell that exits by itself when the dead agent's end of the pipe closes.

use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;

use super::state::{ProcessRecord, Role, SessionRecord};
use super::{POLL, procfs};
use crate::runtime::RuntimeError;

/// What a gated child runs first: wait for the agent's `go`, then become the real program. If
/// the agent dies before saying it, the kernel closes the pipe, `read` sees end of file and the
/// shell exits without running anything.
const GATE: &str = r#"IFS= read -r word && [ "$word" = go ] && exec "$@" </dev/null"#;

/// A gated command: `program args…` run through [`GATE`] (configure stdio, environment and
/// process group on the result as usual; stdin is the gate).
pub fn gated(program: &str, args: impl IntoIterator<Item = String>) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", GATE, "streamspace-gate", program])
        .args(args)
        .stdin(Stdio::piped());
    command
}

/// The agent's end of a gated child's pipe. [`Gate::open`] lets the program run; dropping the
/// gate unopened (or the agent dying) makes the child exit without running it.
#[derive(Debug)]
pub struct Gate(ChildStdin);

impl Gate {
    pub async fn open(mut self) -> std::io::Result<()> {
        self.0.write_all(b"go\n").await
        // The pipe closes here; the program's stdin is /dev/null.
    }
}

/// Spawns a [`gated`] child that outlives the agent, and a task that reaps it while the agent
/// runs. The child's pid and start time stay the same when it becomes the program, so they
/// can be recorded before the gate is opened: no process of a session ever runs unrecorded.
pub fn spawn_gated(
    command: &mut Command,
    role: Role,
) -> Result<(ProcessRecord, Gate), RuntimeError> {
    let mut child: Child = command
        .spawn()
        .map_err(|e| RuntimeError::io(format!("starting the {role:?} process"), e))?;
    // Read the start time before the reaper may wait on the child: until then even a child
    // that exited at once is still listed (as a zombie).
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let start_time = pid.and_then(procfs::stat).map(|s| s.start_time);
    let stdin = child.stdin.take();
    tokio::spawn(async move {
        let status = child.wait().await;
        tracing::debug!(?role, ?status, "session process exited");
    });
    let (Some(pid), Some(start_time), Some(stdin)) = (pid, start_time, stdin) else {
        return Err(RuntimeError::StartFailed(format!(
            "{role:?} exited at once"
        )));
    };
    let record = ProcessRecord {
        role,
        pid,
        start_time,
    };
    Ok((record, Gate(stdin)))
}

/// Signals the session's process group, but only while one of its recorded processes is
/// verifiably alive: a group id whose members are all gone may name someone else's group.
pub fn signal_group(record: &SessionRecord, signal: Signal) -> Result<(), RuntimeError> {
    if !any_alive(record) {
        return Ok(());
    }
    match killpg(Pid::from_raw(record.pgid), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(RuntimeError::Signal(format!(
            "sending {signal} to process group {}: {e}",
            record.pgid
        ))),
    }
}

fn any_alive(record: &SessionRecord) -> bool {
    record
        .processes
        .iter()
        .any(|p| procfs::alive(p.pid, p.start_time).is_some())
}

/// `SIGTERM` (and `SIGCONT`, so hibernated processes can act on it), then `SIGKILL` after
/// `grace`.
pub async fn terminate(record: &SessionRecord, grace: Duration) {
    for signal in [Signal::SIGTERM, Signal::SIGCONT] {
        if let Err(e) = signal_group(record, signal) {
            tracing::warn!(session_id = %record.session_id, error = %e, "could not signal session");
        }
    }
    if poll_until(grace, || !any_alive(record)).await {
        return;
    }
    tracing::warn!(session_id = %record.session_id, "session ignored SIGTERM; killing it");
    if let Err(e) = signal_group(record, Signal::SIGKILL) {
        tracing::warn!(session_id = %record.session_id, error = %e, "could not kill session");
    }
    if !poll_until(Duration::from_secs(5), || !any_alive(record)).await {
        tracing::error!(session_id = %record.session_id, "session processes survived SIGKILL");
    }
}

pub async fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}
