//! Starting real `streamspace` processes for end-to-end tests.
//!
//! Each test gets its own PostgreSQL database (or SQLite file), its own temporary directory and a
//! unique process tag; dropping the [`Harness`] SIGKILLs every process carrying the tag, so a
//! failed test leaves no Xvnc behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use streamspace_client::Client;
use streamspace_proto::api::{Command as ApiCommand, Session, SessionState};
use streamspace_testkit::tagged;
use streamspace_testkit::wait_until;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "ssa_e2e_admin_token_0123456789abcdef";
pub const BIN: &str = env!("CARGO_BIN_EXE_streamspace");

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

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the process to exit.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let name = self.name.clone();
        wait_until(&format!("{name} to exit"), Duration::from_secs(20), || {
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            async move { exited.then_some(()) }
        })
        .await
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
        let path = self.stdout.clone();
        wait_until(
            &format!("{needle:?} in {}'s output", self.name),
            Duration::from_secs(30),
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

/// A test's private world: temp dir, process tag, the processes it started.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub tag: String,
    spawned: usize,
}

impl Harness {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new()
                .prefix("streamspace-e2e-")
                .tempdir()?,
            tag: tagged::new_tag(),
            spawned: 0,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env(tagged::TAG_VAR, &self.tag)
            .env("RUST_LOG", "info,streamspace=debug")
            .env_remove("STREAMSPACE_TOKEN")
            .env_remove("STREAMSPACE_SERVER")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {BIN}"))?;
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
        let data = self.path("data");
        let data_arg = data.display().to_string();
        let up = self.spawn(
            "up",
            &["up", "--data-dir", &data_arg, "--listen", "127.0.0.1:0"],
            &[],
        )?;
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

    /// Starts a control-plane replica named `replica_id` listening on `listen`.
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
        let line = proc.wait_for_stdout("listening on http://").await?;
        let url = line
            .rsplit_once("listening on ")
            .map(|(_, url)| url.trim().to_owned())
            .context("parsing the server's address")?;
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
        let state = state_dir.display().to_string();
        self.spawn(
            &format!("agent-{agent_id}"),
            &[
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
            ],
            &[],
        )
    }

    /// Xvnc processes started by this test.
    pub fn xvnc_processes(&self) -> Vec<(i32, String)> {
        tagged::tagged_programs(&self.tag, "Xvnc")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        tagged::kill_tagged(&self.tag);
    }
}

pub async fn wait_for_state(
    api: &Client,
    id: Uuid,
    want: SessionState,
    timeout: Duration,
) -> anyhow::Result<Session> {
    let result = wait_until(&format!("session {id} to be {want}"), timeout, || {
        let api = api.clone();
        async move {
            let session = api.get_session(id).await.ok()?;
            (session.state == want).then_some(session)
        }
    })
    .await;
    match result {
        Ok(session) => Ok(session),
        Err(e) => {
            let last = api.get_session(id).await;
            Err(e).with_context(|| format!("last seen: {last:?}"))
        }
    }
}

pub async fn wait_for_ready(api: &Client) -> anyhow::Result<()> {
    wait_until(
        "the control plane to be ready",
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move { api.readyz().await.ok().filter(|r| r.ready).map(|_| ()) }
        },
    )
    .await
}

pub async fn wait_for_agent_online(api: &Client, agent_id: &str) -> anyhow::Result<()> {
    wait_until(
        &format!("agent {agent_id} to be online"),
        Duration::from_secs(30),
        || {
            let api = api.clone();
            async move {
                let agent = api.get_agent(agent_id).await.ok()?;
                (agent.status == streamspace_proto::api::AgentStatus::Online).then_some(())
            }
        },
    )
    .await
}

/// The session's commands of one action, oldest first.
pub async fn commands_for(api: &Client, session: Uuid) -> anyhow::Result<Vec<ApiCommand>> {
    let mut commands = api
        .list_commands(&streamspace_proto::api::CommandFilter {
            session_id: Some(session),
            ..Default::default()
        })
        .await?;
    commands.reverse();
    Ok(commands)
}
