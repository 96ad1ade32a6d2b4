//! Control-plane replicas as real `streamspace server` processes (the release binary), started
//! with the testkit's harness and killed when dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use streamspace_client::Client;
use streamspace_testkit::harness::{ADMIN_TOKEN, Harness, Proc, wait_for_ready};

/// The `streamspace` binary: `--bin`, else `target/release/streamspace` of this workspace.
pub fn default_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/streamspace")
}

/// A harness for `bin` whose processes log warnings and errors only.
pub fn harness(bin: &Path) -> anyhow::Result<Harness> {
    let mut h = Harness::new(bin)?;
    h.log_filter = "warn".into();
    Ok(h)
}

pub struct Replica {
    pub id: String,
    pub url: String,
    /// What its certificate is verified with, when it serves TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    proc: Proc,
    /// Its own output directory and process tag, gone with the replica.
    _harness: Harness,
}

impl Replica {
    /// Starts `streamspace server` on a loopback port of its choosing and waits until `/readyz`
    /// says ready.
    pub async fn start(
        bin: &Path,
        id: &str,
        database_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_tls(bin, id, database_url, extra, None).await
    }

    /// [`Self::start`] for a replica given `--tls-cert` (in `extra`): its API is called over
    /// https verified with `tls`.
    pub async fn start_tls(
        bin: &Path,
        id: &str,
        database_url: &str,
        extra: &[&str],
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<Self> {
        let mut h = harness(bin)?;
        let (proc, url) = h.replica(database_url, id, "127.0.0.1:0", extra).await?;
        let replica = Self {
            id: id.to_owned(),
            url,
            tls,
            proc,
            _harness: h,
        };
        wait_for_ready(&replica.api()?)
            .await
            .with_context(|| replica.logs())?;
        Ok(replica)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn api(&self) -> anyhow::Result<Client> {
        Ok(match &self.tls {
            Some(tls) => Client::with_tls(&self.url, ADMIN_TOKEN, tls.clone())?,
            None => Client::new(&self.url, ADMIN_TOKEN)?,
        })
    }

    pub fn agent_ws_url(&self) -> String {
        // `http` → `ws`, `https` → `wss`.
        format!("ws{}/api/v1/agents/connect", &self.url["http".len()..])
    }

    pub fn logs(&self) -> String {
        self.proc.logs()
    }
}
