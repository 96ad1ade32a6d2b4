//! Control-plane replicas as real `streamspace server` processes (the release binary), killed
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use streamspace_client::Client;
use streamspace_testkit::{free_port, wait_until};

/// The admin token every replica the harness starts accepts.
pub const ADMIN_TOKEN: &str = "ssa_bench_admin_token_0123456789abcdef";

/// The `streamspace` binary: `--bin`, else `target/release/streamspace` of this workspace.
pub fn default_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/streamspace")
}

pub struct Replica {
    pub id: String,
    pub url: String,
    child: Child,
    stderr: PathBuf,
}

impl Replica {
    /// Starts `streamspace server` on a free loopback port and waits until `/readyz` says ready.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        id: &str,
        database_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let stdout = dir.join(format!("server-{id}.out"));
        let stderr = dir.join(format!("server-{id}.err"));
        let child = Command::new(bin)
            .args([
                "server",
                "--database-url",
                database_url,
                "--listen",
                &listen,
                "--replica-id",
                id,
            ])
            .args(extra)
            .env("STREAMSPACE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout)?)
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it first: cargo build --release -p streamspace)",
                    bin.display()
                )
            })?;
        let replica = Self {
            id: id.to_owned(),
            url: format!("http://{listen}"),
            child,
            stderr,
        };
        let api = replica.api()?;
        wait_until(
            &format!("replica {id} to be ready"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move { api.readyz().await.ok().filter(|r| r.ready).map(|_| ()) }
            },
        )
        .await
        .with_context(|| replica.logs())?;
        Ok(replica)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn api(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, ADMIN_TOKEN)?)
    }

    pub fn agent_ws_url(&self) -> String {
        format!(
            "{}/api/v1/agents/connect",
            self.url.replacen("http://", "ws://", 1)
        )
    }

    pub fn logs(&self) -> String {
        format!(
            "--- replica {} stderr ---\n{}",
            self.id,
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
