//! High availability for the `process` and `docker` runtimes: several agent processes run with
//! one agent id, and exactly one of them is active.
//!
//! The lease is an exclusive `flock` on a lock file that every candidate can reach (the same
//! host, or a shared filesystem whose locks are coherent). A candidate that cannot take the lock
//! is a standby: it does not recover sessions and does not connect to the control plane; it
//! retries every `retry` interval. The kernel drops the lock the moment the holder dies, however
//! it dies (even `kill -9`), so a standby takes over within one retry interval and then recovers
//! (adopts the sessions the previous holder left) before it registers and accepts commands.
//!
//! Limits, written down in `docs/ARCHITECTURE.md`: the lock only fences processes that see the
//! same lock (a holder cut off from a network filesystem may keep running while another takes
//! the lock — the control plane's registration epoch then keeps only the newest connection);
//! and the holder's pid and host written into the file are for people, not for the protocol.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio_util::sync::CancellationToken;

/// Where the lease lives and how often a standby tries to take it.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// The lock file; created if missing. Its directory must exist.
    pub lock_file: PathBuf,
    /// How often a standby tries to take the lock: the most a takeover waits after the active
    /// agent dies.
    pub retry: Duration,
}

impl HaConfig {
    pub fn new(lock_file: impl Into<PathBuf>) -> Self {
        Self {
            lock_file: lock_file.into(),
            retry: Duration::from_secs(1),
        }
    }
}

/// Why the lease could not be used at all (not: "someone else holds it").
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("cannot open the HA lock file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock the HA lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// The held lease; dropping it (or the process dying) lets a standby take over.
#[derive(Debug)]
pub struct Lease {
    _lock: Flock<File>,
}

/// Waits until this process holds the lease, or `shutdown` is cancelled (`Ok(None)`).
pub async fn acquire(
    config: &HaConfig,
    agent_id: &str,
    shutdown: &CancellationToken,
) -> Result<Option<Lease>, LeaseError> {
    let mut announced = false;
    loop {
        if let Some(lease) = try_acquire(&config.lock_file)? {
            tracing::info!(agent_id, lock = %config.lock_file.display(), "holding the HA lease: this agent is active");
            return Ok(Some(lease));
        }
        if !announced {
            tracing::info!(agent_id, lock = %config.lock_file.display(), "another agent process holds the HA lease; standing by");
            announced = true;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(config.retry) => {}
        }
    }
}

/// Takes the lock if it is free; `Ok(None)` if another process holds it.
pub fn try_acquire(path: &Path) -> Result<Option<Lease>, LeaseError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| LeaseError::Open {
            path: path.to_owned(),
            source,
        })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // Informational only: who holds it, for an operator reading the file.
            let holder = format!(
                "pid {} on {}\n",
                std::process::id(),
                hostname().unwrap_or_else(|| "?".into())
            );
            let _ = lock
                .set_len(0)
                .and_then(|()| lock.write_all(holder.as_bytes()));
            Ok(Some(Lease { _lock: lock }))
        }
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, source)) => Err(LeaseError::Lock {
            path: path.to_owned(),
            source,
        }),
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_release_on_drop() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent.lock");
        let first = try_acquire(&path)?.ok_or("a free lock was not taken")?;
        // flock locks belong to the open file description: a second open in the same process
        // contends exactly like another process would.
        assert!(try_acquire(&path)?.is_none(), "the lock was taken twice");
        drop(first);
        let config = HaConfig {
            lock_file: path.clone(),
            retry: Duration::from_millis(10),
        };
        let second = acquire(&config, "a1", &CancellationToken::new()).await?;
        assert!(second.is_some(), "the released lock was not taken");
        Ok(())
    }

    #[tokio::test]
    async fn a_standby_gives_up_on_shutdown() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent.lock");
        let _held = try_acquire(&path)?.ok_or("a free lock was not taken")?;
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let config = HaConfig::new(&path);
        assert!(acquire(&config, "a1", &shutdown).await?.is_none());
        Ok(())
    }
}
