//! Starting real `streamspace` processes — `up`, `server` replicas and `agent`s — for the
//! end-to-end tests and the benchmark harness.
//!
//! A [`Harness`] is one test's (or one benchmark run's) private world: a temporary directory for
//! output and data, the `streamspace` binary to run (the tests pass Cargo's
//! `CARGO_BIN_EXE_streamspace`, the benchmark a release build), and a unique process tag
//! ([`crate::tagged`]). Dropping it SIGKILLs every process carrying the tag, and every session
//! started under its directory, so a failed test leaves nothing behind. Each started process is a [`Proc`]
//! with its output captured in files, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::unistd::Pid;
use streamspace_client::Client;
use streamspace_proto::api::AgentStatus;

use crate::{tagged, wait_until};

/// The signals [`Proc::signal`] sends.
pub use nix::sys::signal::Signal;

/// The admin token of every control plane a harness starts.
pub const ADMIN_TOKEN: &str = "ssa_e2e_admin_token_0123456789abcdef";
/// How long a started process may take to print its address, or a control plane to be ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment that would point a started process somewhere else than the test says.
const CLEARED_ENV: &[&str] = &[
    "STREAMSPACE_TOKEN",
    "STREAMSPACE_SERVER",
    "DATABASE_URL",
    "REDIS_URL",
];

/// One running `streamspace` process with its output captured in files.
pub struct Proc {
    pub name: String,
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. SIGSTOP to freeze the process, SIGCONT to let it go on).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        nix::sys::signal::kill(Pid::from_raw(pid), signal)
            .with_context(|| format!("sending {signal} to {}", self.name))
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the process to exit.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::SIGTERM)?;
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), Duration::from_secs(20), || {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            async move { exited.then_some(()) }
        })
        .await
    }

    /// Waits for the process to exit on its own (at most [`START_TIMEOUT`]) and returns how.
    pub async fn wait_for_exit(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), START_TIMEOUT, || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }

    /// The URL a `streamspace server` process prints once it listens (`http://…`, or
    /// `https://…` when it serves TLS).
    pub async fn server_url(&self) -> anyhow::Result<String> {
        let line = self.wait_for_stdout(" listening on http").await?;
        line.rsplit_once("listening on ")
            .map(|(_, url)| url.trim().to_owned())
            .with_context(|| format!("parsing {}'s address from {line:?}", self.name))
    }

    pub fn logs(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            self.name,
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits for a stdout line containing `needle` and returns it.
    pub async fn wait_for_stdout(&self, needle: &str) -> anyhow::Result<String> {
        self.wait_for_line(&self.stdout, needle).await
    }

    /// Waits for a stderr line (the log) containing `needle` and returns it.
    pub async fn wait_for_stderr(&self, needle: &str) -> anyhow::Result<String> {
        self.wait_for_line(&self.stderr, needle).await
    }

    async fn wait_for_line(&self, path: &Path, needle: &str) -> anyhow::Result<String> {
        let path = path.to_owned();
        wait_until(
            &format!("{needle:?} in {}'s output", self.name),
            START_TIMEOUT,
            || {
                let line = std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_owned);
                async move { line }
            },
        )
        .await
        .with_context(|| self.logs())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test's private world: temp dir, binary, process tag, the processes it started.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub tag: String,
    bin: PathBuf,
    /// `RUST_LOG` of the started processes.
    pub log_filter: String,
    spawned: usize,
}

impl Harness {
    /// A harness starting `bin` (the `streamspace` binary).
    pub fn new(bin: impl Into<PathBuf>) -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new()
                .prefix("streamspace-e2e-")
                .tempdir()?,
            tag: tagged::new_tag(),
            bin: bin.into(),
            log_filter: "info,streamspace=debug".into(),
            spawned: 0,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A SQLite database file of this test's own (`streamspace.db` in its directory).
    pub fn sqlite_url(&self) -> String {
        crate::sqlite_url(&self.path("streamspace.db"))
    }

    /// The `streamspace` binary this harness starts.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Starts `streamspace ARGS…` with the test's tag and the given extra environment.
    pub fn spawn(
        &mut self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        self.spawned += 1;
        let stdout = self.path(&format!("{name}-{}.out", self.spawned));
        let stderr = self.path(&format!("{name}-{}.err", self.spawned));
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env(tagged::TAG_VAR, &self.tag)
            .env("RUST_LOG", &self.log_filter)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?);
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "starting {} (for the benchmark: cargo build --release -p streamspace)",
                self.bin.display()
            )
        })?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        })
    }

    /// `streamspace up` on a fresh data directory, listening on a port of its choosing. Returns
    /// the process, its URL (no trailing slash) and the data directory.
    pub async fn up(&mut self) -> anyhow::Result<(Proc, String, PathBuf)> {
        self.up_with(&[]).await
    }

    /// [`Self::up`] with extra arguments (e.g. `--tls-cert`).
    pub async fn up_with(&mut self, extra: &[&str]) -> anyhow::Result<(Proc, String, PathBuf)> {
        let data = self.path("data");
        let data_arg = data.display().to_string();
        let mut args = vec!["up", "--data-dir", &data_arg, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let up = self.spawn("up", &args, &[])?;
        let line = up.wait_for_stdout("URL:").await?;
        let url = line
            .split_whitespace()
            .last()
            .context("URL on the line")?
            .trim_end_matches('/')
            .to_owned();
        Ok((up, url, data))
    }

    /// Starts a control plane on `database_url`, on a port of its own choosing.
    pub async fn server(
        &mut self,
        database_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<(Proc, String)> {
        self.replica(database_url, "e2e-a", "127.0.0.1:0", extra)
            .await
    }

    /// Starts a control-plane replica named `replica_id` listening on `listen`; returns it and
    /// its URL once it printed the address it listens on.
    pub async fn replica(
        &mut self,
        database_url: &str,
        replica_id: &str,
        listen: &str,
        extra: &[&str],
    ) -> anyhow::Result<(Proc, String)> {
        let mut args = vec![
            "server",
            "--database-url",
            database_url,
            "--listen",
            listen,
            "--replica-id",
            replica_id,
        ];
        args.extend_from_slice(extra);
        let name = if replica_id == "e2e-a" {
            "server".to_owned()
        } else {
            format!("server-{replica_id}")
        };
        let proc = self.spawn(&name, &args, &[("STREAMSPACE_ADMIN_TOKEN", ADMIN_TOKEN)])?;
        let url = proc.server_url().await?;
        Ok((proc, url))
    }

    /// Starts an agent with the process runtime.
    pub fn agent(
        &mut self,
        server_url: &str,
        agent_id: &str,
        key: &str,
        state_dir: &Path,
    ) -> anyhow::Result<Proc> {
        self.agent_with(server_url, agent_id, key, state_dir, &[])
    }

    /// [`Self::agent`] with extra arguments (e.g. `--max-sessions`).
    pub fn agent_with(
        &mut self,
        server_url: &str,
        agent_id: &str,
        key: &str,
        state_dir: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Proc> {
        let state = state_dir.display().to_string();
        let mut args = vec![
            "agent",
            "--server",
            server_url,
            "--agent-id",
            agent_id,
            "--key",
            key,
            "--runtime",
            "process",
            "--state-dir",
            &state,
        ];
        args.extend_from_slice(extra);
        self.spawn(&format!("agent-{agent_id}"), &args, &[])
    }

    /// Xvnc processes started by this test (sessions' included: their sockets are under this
    /// harness's directory).
    pub fn xvnc_processes(&self) -> Vec<(i32, String)> {
        tagged::programs_of(&self.tag, self.dir.path(), "Xvnc")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        tagged::kill_processes_of(&self.tag, self.dir.path());
    }
}

/// Waits until the control plane behind `api` says it is ready.
pub async fn wait_for_ready(api: &Client) -> anyhow::Result<()> {
    wait_until("the control plane to be ready", START_TIMEOUT, || {
        let api = api.clone();
        async move { api.readyz().await.ok().filter(|r| r.ready).map(|_| ()) }
    })
    .await
}

/// Waits until the API lists `agent_id` online.
pub async fn wait_for_agent_online(api: &Client, agent_id: &str) -> anyhow::Result<()> {
    wait_until(
        &format!("agent {agent_id} to be online"),
        START_TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let agent = api.get_agent(agent_id).await.ok()?;
                (agent.status == AgentStatus::Online).then_some(())
            }
        },
    )
    .await
}
