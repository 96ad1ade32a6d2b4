//! Leadership for the `process` and `docker` runtimes: several agent processes run with one
//! agent id, and the one holding an exclusive `flock` on a shared lock file is active.
//!
//! The lock file is one every candidate can reach (the same host, or a shared filesystem whose
//! locks are coherent). A candidate that cannot take the lock is a standby: it does not recover
//! sessions and does not connect to the control plane; it retries every `retry` interval. The
//! kernel drops the lock the moment the holder dies, however it dies (even `kill -9`), so a
//! standby takes over within one retry interval and then recovers (adopts the sessions the
//! previous holder left) before it registers and accepts commands. Nothing but the holder's
//! death or its stepping down frees the lock, so a term of this kind is never lost.
//!
//! Limits, written down in `docs/ARCHITECTURE.md`: the lock only fences processes that see the
//! same lock (a holder cut off from a network filesystem may keep running while another takes
//! the lock — the control plane's registration epoch then keeps only the newest connection);
//! and the holder's pid and host written into the file are for people, not for the protocol.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio_util::sync::CancellationToken;

use super::{Leadership, LeadershipError, Term};

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

/// Why the lock file could not be used at all (not: "someone else holds it").
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the HA lock file {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock the HA lock file {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// Leadership by holding the lock file of [`HaConfig`].
#[derive(Debug, Clone)]
pub struct FlockLeadership {
    config: HaConfig,
    agent_id: String,
}

impl FlockLeadership {
    /// `agent_id` is for log lines only; the lock file decides.
    pub fn new(config: HaConfig, agent_id: impl Into<String>) -> Self {
        Self {
            config,
            agent_id: agent_id.into(),
        }
    }
}

#[async_trait]
impl Leadership for FlockLeadership {
    async fn acquire(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Box<dyn Term>>, LeadershipError> {
        let (agent_id, lock) = (&self.agent_id, self.config.lock_file.display());
        let mut announced = false;
        loop {
            if let Some(held) = try_acquire(&self.config.lock_file)? {
                tracing::info!(%agent_id, %lock, "holding the HA lease: this agent is active");
                return Ok(Some(Box::new(held)));
            }
            if !announced {
                tracing::info!(%agent_id, %lock, "another agent process holds the HA lease; standing by");
                announced = true;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(self.config.retry) => {}
            }
        }
    }
}

/// The held lock; dropping it (or the process dying) lets a standby take over.
#[derive(Debug)]
pub struct HeldLock {
    _lock: Flock<File>,
}

#[async_trait]
impl Term for HeldLock {
    async fn lost(&self) {
        // Only this process can let go of the lock.
        std::future::pending().await
    }

    async fn step_down(self: Box<Self>) {
        drop(self);
    }
}

/// Takes the lock if it is free; `Ok(None)` if another process holds it.
pub fn try_acquire(path: &Path) -> Result<Option<HeldLock>, LockError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| LockError::Open {
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
            Ok(Some(HeldLock { _lock: lock }))
        }
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, source)) => Err(LockError::Lock {
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

    fn leadership(path: &Path) -> FlockLeadership {
        let config = HaConfig {
            lock_file: path.to_owned(),
            retry: Duration::from_millis(10),
        };
        FlockLeadership::new(config, "a1")
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_release_on_drop() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent.lock");
        let first = try_acquire(&path)?.ok_or("a free lock was not taken")?;
        // flock locks belong to the open file description: a second open in the same process
        // contends exactly like another process would.
        assert!(try_acquire(&path)?.is_none(), "the lock was taken twice");
        drop(first);
        let second = leadership(&path).acquire(&CancellationToken::new()).await?;
        assert!(second.is_some(), "the released lock was not taken");
        Ok(())
    }

    // Paused time: the standby's retries and the quiet period run on the virtual clock.
    #[tokio::test(start_paused = true)]
    async fn the_standby_leads_once_the_leader_steps_down() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent.lock");
        let (a, b) = (leadership(&path), leadership(&path));
        let shutdown = CancellationToken::new();
        let term_a = a
            .acquire(&shutdown)
            .await?
            .ok_or("a free lock was not taken")?;
        let mut standby = tokio::spawn(async move {
            let term = b.acquire(&CancellationToken::new()).await?;
            Ok::<_, LeadershipError>(term.is_some())
        });
        // For many retry intervals, the leader's term is not lost and the standby waits.
        tokio::select! {
            () = term_a.lost() => return Err("a held lock was reported lost".into()),
            led = &mut standby => return Err(format!("the standby led while the lock was held: {led:?}").into()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        term_a.step_down().await;
        assert!(standby.await??, "the standby took over after the step-down");
        Ok(())
    }

    #[tokio::test]
    async fn a_standby_gives_up_on_shutdown() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent.lock");
        let _held = try_acquire(&path)?.ok_or("a free lock was not taken")?;
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert!(leadership(&path).acquire(&shutdown).await?.is_none());
        Ok(())
    }
}
