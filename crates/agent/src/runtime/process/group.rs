//! Controlling a session's processes as one group: spawning them so they outlive the agent,
//! signalling the group safely, and ending it (politely, then firmly).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::state::{ProcessRecord, Role, SessionRecord};
use super::{POLL, procfs};
use crate::runtime::RuntimeError;

/// Spawns a child that outlives the agent, and a task that reaps it while the agent runs.
pub fn spawn_reaped(command: &mut Command, role: Role) -> Result<ProcessRecord, RuntimeError> {
    let program = command
        .as_std()
        .get_program()
        .to_string_lossy()
        .into_owned();
    let mut child: Child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            RuntimeError::MissingProgram(format!("program {program:?} not found"))
        }
        _ => RuntimeError::io(format!("starting {program}"), e),
    })?;
    // Read the start time before the reaper may wait on the child: until then even a child
    // that exited at once is still listed (as a zombie).
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let start_time = pid.and_then(procfs::stat).map(|s| s.start_time);
    tokio::spawn(async move {
        let status = child.wait().await;
        tracing::debug!(%program, ?status, "session process exited");
    });
    let (Some(pid), Some(start_time)) = (pid, start_time) else {
        return Err(RuntimeError::StartFailed(format!(
            "{role:?} exited at once"
        )));
    };
    Ok(ProcessRecord {
        role,
        pid,
        start_time,
    })
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
