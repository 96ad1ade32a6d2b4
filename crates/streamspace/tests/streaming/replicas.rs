//! Streams across replicas: the viewer on replica B, the agent (and its data connection) on
//! replica A, one hop between them through Redis. [`Pair`] sets up such two replicas for the
//! other tests of this binary that need them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use streamspace_client::Client;
use streamspace_client::tls::{TlsOptions, client_config};
use streamspace_proto::api::SessionState;
use streamspace_testkit::PgCluster;
use streamspace_testkit::redis::RedisServer;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::common::{ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready};
use super::{START_TIMEOUT, targets, viewer};

/// Two replicas (`R1`, `R2`) on one PostgreSQL database and one Redis, and an in-process agent
/// held by `R1` whose sessions are the runtime's targets.
pub struct Pair {
    pub urls: [String; 2],
    /// The bootstrap admin on each replica.
    pub admins: [Client; 2],
    pub runtime: Arc<targets::TargetRuntime>,
    procs: [Proc; 2],
    stop_agent: CancellationToken,
    agent: JoinHandle<Result<(), streamspace_agent::AgentError>>,
}

impl Pair {
    /// Starts both replicas with `extra` arguments besides Redis and a one-second heartbeat,
    /// then agent `agent_id` connected to `R1`.
    pub async fn start(
        h: &mut Harness,
        database_url: &str,
        redis_url: &str,
        extra: &[&str],
        agent_id: &str,
        runtime: targets::TargetRuntime,
    ) -> anyhow::Result<Self> {
        Self::start_trusting(h, database_url, redis_url, extra, agent_id, runtime, None).await
    }

    /// [`Pair::start`] with clients and agent that trust the CA certificate `ca`, for replicas
    /// that serve TLS (given in `extra`).
    pub async fn start_trusting(
        h: &mut Harness,
        database_url: &str,
        redis_url: &str,
        extra: &[&str],
        agent_id: &str,
        runtime: targets::TargetRuntime,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let tls = client_config(&TlsOptions {
            ca_cert: ca.map(ToOwned::to_owned),
            ..TlsOptions::default()
        })?;
        let mut args = vec!["--redis-url", redis_url, "--heartbeat-interval", "1"];
        args.extend_from_slice(extra);
        let (p1, url1) = h.replica(database_url, "R1", "127.0.0.1:0", &args).await?;
        let (p2, url2) = h.replica(database_url, "R2", "127.0.0.1:0", &args).await?;
        let admins = [
            Client::with_tls(&url1, ADMIN_TOKEN, tls.clone())?,
            Client::with_tls(&url2, ADMIN_TOKEN, tls)?,
        ];
        let procs = [p1, p2];
        let logs = || format!("{}\n{}", procs[0].logs(), procs[1].logs());
        for admin in &admins {
            wait_for_ready(admin).await.with_context(logs)?;
        }
        let runtime = Arc::new(runtime);
        let key = admins[0].create_agent_key(agent_id).await?;
        let mut config = streamspace_agent::AgentConfig::new(
            vec![url1.clone()],
            agent_id,
            key.secret,
            h.path(agent_id),
        );
        config.tls.ca_cert = ca.map(ToOwned::to_owned);
        let stop_agent = CancellationToken::new();
        let agent = tokio::spawn(streamspace_agent::run_with_runtime(
            config,
            runtime.clone(),
            stop_agent.clone(),
        ));
        wait_for_agent_online(&admins[0], agent_id)
            .await
            .with_context(logs)?;
        Ok(Self {
            urls: [url1, url2],
            admins,
            runtime,
            procs,
            stop_agent,
            agent,
        })
    }

    pub fn logs(&self) -> String {
        format!("{}\n{}", self.procs[0].logs(), self.procs[1].logs())
    }

    /// Stops the agent and checks it ended without an error.
    pub async fn stop_agent(self) -> anyhow::Result<()> {
        self.stop_agent.cancel();
        self.agent.await??;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_on_another_replica_reaches_the_agent_through_one_hop() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut h = super::common::harness()?;
    let db = pg.create_database()?;
    let runtime = targets::TargetRuntime::new([targets::echo().await?]);
    let pair = Pair::start(&mut h, &db, &redis.url(), &[], "hop-agent", runtime).await?;
    let logs = || pair.logs();
    let [api_a, api_b] = &pair.admins;
    let session = api_a.create_session("xterm").await?;
    api_a
        .wait_for_session(
            session.id,
            SessionState::Running,
            Instant::now() + START_TIMEOUT,
        )
        .await
        .with_context(logs)?;

    // The browser lands on B; the agent is held by A and dials its data connection to A.
    let info = api_b.connect_session(session.id).await?;
    assert!(
        info.url
            .contains(pair.urls[1].trim_start_matches("http://")),
        "{}",
        info.url
    );
    let (ws, _) = viewer::open(&info.url, None).await.with_context(logs)?;
    let (mut tx, mut rx) = ws.split();
    let sent: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    for chunk in sent.chunks(32 * 1024) {
        tx.send(Message::binary(chunk.to_vec())).await?;
    }
    let mut back = Vec::new();
    while back.len() < sent.len() {
        match tokio::time::timeout(Duration::from_secs(20), rx.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => back.extend_from_slice(&b),
            Ok(Some(Ok(_))) => {}
            other => anyhow::bail!(
                "echo through two replicas failed after {} bytes: {other:?}\n{}",
                back.len(),
                logs()
            ),
        }
    }
    assert_eq!(
        back, sent,
        "bytes cross the replica hop unchanged, both ways"
    );

    // The agent's data connection to A and A's hop to B were raw streams, not WebSockets.
    let mut counted = Vec::new();
    for url in &pair.urls {
        let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
        counted.extend(
            metrics
                .lines()
                .filter(|l| l.starts_with("streamspace_tunnel_data_connections_total"))
                .map(str::to_owned),
        );
    }
    assert_eq!(
        counted,
        [
            r#"streamspace_tunnel_data_connections_total{transport="raw"} 1"#,
            r#"streamspace_tunnel_data_connections_total{transport="raw"} 1"#
        ],
        "{}",
        logs()
    );
    pair.stop_agent().await
}
