//! Scenario `tunnel`: bytes through a viewer's stream — browser-side WebSocket → server → agent
//! data WebSocket → TCP target — as bulk throughput (a source sending a fixed number of bytes:
//! the downstream direction a VNC stream mostly uses) and small-message round trips (an echo).
//! References in the same run, against the same targets: raw TCP over loopback, and websockify
//! (Debian's python3-websockify) in front of each target.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_client::Client;
use streamspace_proto::api::{CreateTemplate, SessionState};
use streamspace_testkit::{PgCluster, free_port, wait_until};
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
    let id = session.id;
    wait_until(
        &format!("session {id} to run"),
        Duration::from_secs(30),
        || async move {
            let s = api.get_session(id).await.ok()?;
            (s.state == SessionState::Running).then_some(())
        },
    )
    .await?;
    Ok(id)
}

/// A fresh viewer URL (tokens are short-lived and single-use).
async fn viewer(api: &Client, session: Uuid) -> anyhow::Result<Path> {
    Ok(Path::Ws(api.connect_session(session).await?.url))
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
    let db = pg.create_database()?;
    let dir = tempfile::Builder::new()
        .prefix("streamspace-bench-")
        .tempdir()?;
    let replica = Replica::start(bin, dir.path(), "bench-0", &db, &[]).await?;
    let api = replica.api()?;
    for name in ["bench-source", "bench-echo"] {
        let template: CreateTemplate =
            serde_json::from_value(serde_json::json!({ "name": name, "command": ["true"] }))?;
        api.create_template(&template).await?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let key = api.create_agent_key("bench-agent").await?.secret;
    let agent = agent::spawn(
        agent::Spec {
            ws_url: replica.agent_ws_url(),
            key,
            agent_id: "bench-agent".into(),
            heartbeat: HEARTBEAT,
            targets: [
                ("bench-source".to_owned(), source.addr),
                ("bench-echo".to_owned(), echo.addr),
            ]
            .into(),
        },
        stop_rx,
    )
    .await?;
    let source_session = running_session(&api, "bench-source")
        .await
        .with_context(|| replica.logs())?;
    let echo_session = running_session(&api, "bench-echo")
        .await
        .with_context(|| replica.logs())?;

    let mut bulk = [vec![], vec![], vec![]];
    let mut rtt_p50 = [vec![], vec![], vec![]];
    let mut rtt_p99 = [vec![], vec![], vec![]];
    // Warm-up, not recorded (a whole transfer: a viewer leaving early breaks the agent's pipe).
    pipe::bulk(&viewer(&api, source_session).await?, bytes).await?;
    for run in 0..p.runs {
        let paths = [
            viewer(&api, source_session).await?,
            Path::Ws(ws_source.url.clone()),
            Path::Tcp(source.addr),
        ];
        for (i, path) in paths.iter().enumerate() {
            bulk[i].push(
                pipe::bulk(path, bytes)
                    .await
                    .with_context(|| replica.logs())?,
            );
        }
        let paths = [
            viewer(&api, echo_session).await?,
            Path::Ws(ws_echo.url.clone()),
            Path::Tcp(echo.addr),
        ];
        for (i, path) in paths.iter().enumerate() {
            let mut lat = pipe::round_trips(path, p.round_trips, p.message_bytes)
                .await
                .with_context(|| replica.logs())?;
            lat.sort_by(f64::total_cmp);
            rtt_p50[i].push(percentile(&lat, 50.0));
            rtt_p99[i].push(percentile(&lat, 99.0));
        }
        println!(
            "  run {}: bulk MB/s streamspace {:.0}, websockify {:.0}, TCP {:.0}; RTT p50 ms {:.3}, {:.3}, {:.3}",
            run + 1,
            bulk[0][run],
            bulk[1][run],
            bulk[2][run],
            rtt_p50[0][run],
            rtt_p50[1][run],
            rtt_p50[2][run]
        );
    }
    let _ = stop_tx.send(true);
    agent.await??;

    let mut rows = Vec::new();
    let names = ["websockify", "raw TCP"];
    for (metric, unit, values) in [
        ("downstream bulk", "MB/s", bulk),
        ("round trip p50", "ms", rtt_p50),
        ("round trip p99", "ms", rtt_p99),
    ] {
        let [ours, wsify, tcp] = values;
        let ours = Stat::of(ours);
        for (name, reference) in names.iter().zip([Stat::of(wsify), Stat::of(tcp)]) {
            rows.push(Row {
                setup: "1 replica".into(),
                metric: metric.into(),
                unit: unit.into(),
                value: ours.clone(),
                reference: Some(Reference {
                    name: (*name).into(),
                    ratio: ours.median / reference.median,
                    value: reference,
                }),
            });
        }
    }
    let notes = vec![
        format!(
            "Bulk: {} MB (10⁶ bytes) from a TCP source, timed from opening the connection to the last byte; \
             round trips: {} messages of {} bytes through a TCP echo, one at a time.",
            p.bulk_mb, p.round_trips, p.message_bytes
        ),
        "Ratios are ours ÷ reference: above 1 is better for MB/s, worse for latency.".into(),
        "The client, the server, the simulated agent, websockify and the targets share this machine's CPUs."
            .into(),
    ];
    Ok((rows, notes))
}
