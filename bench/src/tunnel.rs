//! Scenario `tunnel`: bytes through a viewer's stream — browser-side WebSocket → server → agent
//! data WebSocket → TCP target — as bulk throughput (a source sending a fixed number of bytes:
//! the downstream direction a VNC stream mostly uses) and small-message round trips (an echo).
//! References in the same run, against the same targets: raw TCP over loopback, and websockify
//! (Debian's python3-websockify) in front of each target.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_client::Client;
use streamspace_proto::api::{CreateTemplate, SessionState};
use streamspace_testkit::{PgCluster, RedisServer, free_port, wait_until};
use tokio::sync::watch;
use uuid::Uuid;

use crate::agent;
use crate::commands::HEARTBEAT;
use crate::pipe::{self, Path};
use crate::procs::Replica;
use crate::report::{Reference, Row, Stat, percentile};

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub runs: usize,
    pub bulk_mb: usize,
    pub round_trips: usize,
    pub message_bytes: usize,
    /// Record every viewing (`--recording-policy always` into a local directory), to measure
    /// what recording costs the tunnel.
    pub record: bool,
}

/// websockify in front of one target, killed when dropped.
struct Websockify {
    url: String,
    child: Child,
}

impl Websockify {
    async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new("websockify")
            .arg(format!("127.0.0.1:{port}"))
            .arg(target.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting websockify (apt-get install python3-websockify)")?;
        let ws = Self {
            url: format!("ws://127.0.0.1:{port}/"),
            child,
        };
        wait_until(
            "websockify to listen",
            Duration::from_secs(20),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await?;
        Ok(ws)
    }
}

impl Drop for Websockify {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn running_session(api: &Client, template: &str) -> anyhow::Result<Uuid> {
    let session = api.create_session(template).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    api.wait_for_session(session.id, SessionState::Running, deadline)
        .await?;
    Ok(session.id)
}

/// A fresh viewer URL (tokens are short-lived and single-use).
async fn viewer(api: &Client, session: Uuid) -> anyhow::Result<Path> {
    Ok(Path::Ws(api.connect_session(session).await?.url))
}

/// A control plane holding a simulated agent with one source and one echo session; viewers
/// connect through `viewer_api`'s replica (the last one: with two, not the agent's).
struct Setup {
    name: String,
    replicas: Vec<Replica>,
    viewer_api: Client,
    source_session: Uuid,
    echo_session: Uuid,
    agent: tokio::task::JoinHandle<anyhow::Result<u64>>,
}

impl Setup {
    async fn start(
        bin: &std::path::Path,
        db: &str,
        redis_url: Option<&str>,
        recordings: Option<&str>,
        targets: [SocketAddr; 2],
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let mut extra: Vec<&str> = redis_url.map_or(vec![], |url| vec!["--redis-url", url]);
        if let Some(store) = recordings {
            extra.extend(["--recording-policy", "always", "--recording-store", store]);
        }
        let count = if redis_url.is_some() { 2 } else { 1 };
        let mut replicas = Vec::new();
        for i in 0..count {
            let id = format!("bench-{}-{i}", if count == 1 { "single" } else { "pair" });
            replicas.push(Replica::start(bin, &id, db, &extra).await?);
        }
        let api = replicas[0].api()?;
        for name in ["bench-source", "bench-echo"] {
            let template: CreateTemplate =
                serde_json::from_value(serde_json::json!({ "name": name, "command": ["true"] }))?;
            api.create_template(&template).await?;
        }
        let key = api.create_agent_key("bench-agent").await?.secret;
        let agent = agent::spawn(
            agent::Spec {
                ws_url: replicas[0].agent_ws_url(),
                key,
                agent_id: "bench-agent".into(),
                heartbeat: HEARTBEAT,
                targets: [
                    ("bench-source".to_owned(), targets[0]),
                    ("bench-echo".to_owned(), targets[1]),
                ]
                .into(),
                max_sessions: agent::MAX_SESSIONS,
            },
            stop,
        )
        .await?;
        let logs = |r: &[Replica]| r.iter().map(Replica::logs).collect::<Vec<_>>().join("\n");
        let source_session = running_session(&api, "bench-source")
            .await
            .with_context(|| logs(&replicas))?;
        let echo_session = running_session(&api, "bench-echo")
            .await
            .with_context(|| logs(&replicas))?;
        let viewer_api = replicas[count - 1].api()?;
        Ok(Self {
            name: format!(
                "{}{}",
                if count == 1 {
                    "1 replica"
                } else {
                    "2 replicas, viewer on the other"
                },
                if recordings.is_some() {
                    ", recorded"
                } else {
                    ""
                }
            ),
            replicas,
            viewer_api,
            source_session,
            echo_session,
            agent,
        })
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(Replica::logs)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Per-run values of one path: bulk MB/s, round-trip p50 and p99.
#[derive(Default)]
struct Series {
    bulk: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Series {
    async fn measure(
        &mut self,
        bulk: Path,
        echo: Path,
        bytes: usize,
        p: &Params,
    ) -> anyhow::Result<()> {
        self.bulk.push(pipe::bulk(&bulk, bytes).await?);
        let mut lat = pipe::round_trips(&echo, p.round_trips, p.message_bytes).await?;
        lat.sort_by(f64::total_cmp);
        self.p50.push(percentile(&lat, 50.0));
        self.p99.push(percentile(&lat, 99.0));
        Ok(())
    }
}

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0 || p.bulk_mb == 0 || p.round_trips == 0 || p.message_bytes == 0 {
        bail!("runs, bulk size, round trips and message size must be positive");
    }
    let bytes = p.bulk_mb * 1_000_000;
    let source = pipe::source(bytes).await?;
    let echo = pipe::echo().await?;
    let ws_source = Websockify::start(source.addr).await?;
    let ws_echo = Websockify::start(echo.addr).await?;

    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let targets = [source.addr, echo.addr];
    // With --record, every viewing is also recorded into this folder (shared by the replicas).
    let recordings = tempfile::tempdir()?;
    let store = format!("dir:{}", recordings.path().display());
    let store = p.record.then_some(store.as_str());
    let mut setups = Vec::new();
    for redis_url in [None, Some(redis.url())] {
        let db = pg.create_database()?;
        let setup = Setup::start(
            bin,
            &db,
            redis_url.as_deref(),
            store,
            targets,
            stop_rx.clone(),
        );
        setups.push(setup.await?);
    }

    let mut ours: Vec<Series> = setups.iter().map(|_| Series::default()).collect();
    let mut wsify = Series::default();
    let mut tcp = Series::default();
    // Warm-up, not recorded (whole transfers: a viewer leaving early breaks the agent's pipe).
    for s in &setups {
        let url = viewer(&s.viewer_api, s.source_session).await?;
        pipe::bulk(&url, bytes).await.with_context(|| s.logs())?;
    }
    for run in 0..p.runs {
        for (s, series) in setups.iter().zip(&mut ours) {
            let bulk = viewer(&s.viewer_api, s.source_session).await?;
            let echo = viewer(&s.viewer_api, s.echo_session).await?;
            series
                .measure(bulk, echo, bytes, p)
                .await
                .with_context(|| s.logs())?;
        }
        let (bulk_path, echo_path) = (
            Path::Ws(ws_source.url.clone()),
            Path::Ws(ws_echo.url.clone()),
        );
        wsify.measure(bulk_path, echo_path, bytes, p).await?;
        tcp.measure(Path::Tcp(source.addr), Path::Tcp(echo.addr), bytes, p)
            .await?;
        println!(
            "  run {}: bulk MB/s {}, websockify {:.0}, TCP {:.0}",
            run + 1,
            ours.iter()
                .zip(&setups)
                .map(|(o, s)| format!("{} {:.0}", s.name, o.bulk[run]))
                .collect::<Vec<_>>()
                .join(", "),
            wsify.bulk[run],
            tcp.bulk[run],
        );
    }
    let _ = stop_tx.send(true);
    for s in setups.iter_mut() {
        (&mut s.agent).await??;
    }

    let mut rows = Vec::new();
    for (setup, series) in setups.iter().zip(ours) {
        for (metric, unit, values, refs) in [
            (
                "downstream bulk",
                "MB/s",
                series.bulk,
                [&wsify.bulk, &tcp.bulk],
            ),
            ("round trip p50", "ms", series.p50, [&wsify.p50, &tcp.p50]),
            ("round trip p99", "ms", series.p99, [&wsify.p99, &tcp.p99]),
        ] {
            let value = Stat::of(values);
            for (name, reference) in ["websockify", "raw TCP"].into_iter().zip(refs) {
                let reference = Stat::of(reference.clone());
                rows.push(Row {
                    setup: setup.name.clone(),
                    metric: metric.into(),
                    unit: unit.into(),
                    value: value.clone(),
                    reference: Some(Reference {
                        name: name.into(),
                        ratio: value.median / reference.median,
                        value: reference,
                    }),
                });
            }
        }
    }
    let notes = vec![
        format!(
            "Bulk: {} MB (10⁶ bytes) from a TCP source, timed from opening the connection to the last byte; \
             round trips: {} messages of {} bytes through a TCP echo, one at a time.",
            p.bulk_mb, p.round_trips, p.message_bytes
        ),
        "With 2 replicas the agent holds its control and data connections to the first and the viewer \
         connects to the second, so every byte takes the replica-to-replica hop."
            .into(),
        "Ratios are ours ÷ reference: above 1 is better for MB/s, worse for latency.".into(),
        "The client, the replicas, the simulated agent, websockify and the targets share this machine's CPUs."
            .into(),
    ];
    Ok((rows, notes))
}
