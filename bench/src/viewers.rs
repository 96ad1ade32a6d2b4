//! Scenario `viewers`: N viewers at once, each streaming from its own simulated session, through
//! one replica and across two (the viewers on the replica the agent is not on). Reported per
//! run, on a fresh control plane and agent each time:
//!
//! - memory per viewer: resident memory with the N viewers streaming minus before they
//!   connected, over N — for the replicas (summed) and for the agent, which runs as a child
//!   process of the harness so that its memory is its own;
//! - CPU per GB relayed: user + system time of the replicas and of the agent over a window of
//!   streaming, over the gigabytes that reached the viewers in it;
//! - the keystroke → framebuffer round trip (8 bytes out, 8 back) through the tunnel while the N
//!   viewers stream, against the same echo server reached directly over TCP in the same run.
//!
//! Each session's "VNC server" sends `rate_kib` KiB a second in 50 chunks (a desktop that keeps
//! changing). The viewers run in the harness's own process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_proto::api::{CreateTemplate, SessionState};
use streamspace_testkit::{PgCluster, RedisServer, wait_until};
use tokio::sync::watch;

use crate::agent;
use crate::agents::{cpu_secs, rss_kib};
use crate::commands::HEARTBEAT;
use crate::pipe::{self, Path};
use crate::procs::Replica;
use crate::report::{Reference, Row, Stat, percentile};

/// Chunks a session's stream is sent in, per second.
const CHUNKS_PER_SEC: u64 = 50;
/// The size of a keystroke (an RFB KeyEvent) and of the echo that stands for its update.
const KEYSTROKE_BYTES: usize = 8;
/// How long every viewer may take to receive its first bytes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub runs: usize,
    pub counts: Vec<usize>,
    /// KiB per second each session sends.
    pub rate_kib: usize,
    /// Seconds of streaming over which CPU and bytes are counted.
    pub window_secs: u64,
    /// Keystroke round trips per run.
    pub round_trips: usize,
}

/// The simulated agent as a child process (`streamspace-bench sim-agent SPEC`), stopped when
/// dropped (its stdin closes).
struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    fn start(spec: &agent::Spec) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the harness's own binary")?;
        let mut child = Command::new(exe)
            .arg("sim-agent")
            .arg(serde_json::to_string(spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the simulated agent process")?;
        let stdout = child.stdout.take().context("the agent's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the simulated agent did not register: {line:?}");
        }
        Ok(Self { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `streamspace-bench sim-agent SPEC`: runs one simulated agent until stdin closes; prints
/// `ready` once registered.
pub async fn sim_agent_main(spec: &str) -> anyhow::Result<()> {
    let spec: agent::Spec = serde_json::from_str(spec).context("the agent's spec")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = agent::spawn(spec, stop_rx).await?;
    println!("ready");
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    let _ = stop_tx.send(true);
    task.await??;
    Ok(())
}

/// What one run measured.
struct Sample {
    server_kib: f64,
    agent_kib: f64,
    server_cpu_per_gb: f64,
    agent_cpu_per_gb: f64,
    relayed_mb_s: f64,
    tunnel: Vec<f64>,
    direct: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    bin: &std::path::Path,
    pg: &PgCluster,
    redis_url: Option<&str>,
    n: usize,
    source: SocketAddr,
    echo: SocketAddr,
    p: &Params,
) -> anyhow::Result<Sample> {
    let db = pg.create_database()?;
    let extra: Vec<&str> = redis_url.map_or(vec![], |url| vec!["--redis-url", url]);
    let count = if redis_url.is_some() { 2 } else { 1 };
    let mut replicas = Vec::new();
    for i in 0..count {
        replicas.push(Replica::start(bin, &format!("viewers-{i}"), &db, &extra).await?);
    }
    let logs = || {
        replicas
            .iter()
            .map(Replica::logs)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let api = replicas[0].api()?;
    for name in ["bench-stream", "bench-echo"] {
        let template: CreateTemplate =
            serde_json::from_value(serde_json::json!({ "name": name, "command": ["true"] }))?;
        api.create_template(&template).await?;
    }
    let key = api.create_agent_key("bench-agent").await?.secret;
    let agent = AgentProcess::start(&agent::Spec {
        ws_url: replicas[0].agent_ws_url(),
        key,
        agent_id: "bench-agent".into(),
        heartbeat: HEARTBEAT,
        targets: HashMap::from([
            ("bench-stream".to_owned(), source),
            ("bench-echo".to_owned(), echo),
        ]),
        max_sessions: u32::try_from(n + 1)?,
        tls: None,
    })?;
    let deadline = Instant::now() + Duration::from_secs(60 + n as u64 / 5);
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        sessions.push(api.create_session("bench-stream").await?.id);
    }
    let echo_session = api.create_session("bench-echo").await?.id;
    for id in sessions.iter().chain([&echo_session]) {
        api.wait_for_session(*id, SessionState::Running, deadline)
            .await
            .with_context(logs)?;
    }
    let viewer_api = replicas[count - 1].api()?;
    let server_pids: Vec<u32> = replicas.iter().map(Replica::pid).collect();
    let server_rss =
        || -> anyhow::Result<u64> { server_pids.iter().map(|pid| rss_kib(*pid)).sum() };
    let server_cpu =
        || -> anyhow::Result<f64> { server_pids.iter().map(|pid| cpu_secs(*pid)).sum() };
    let (server_before, agent_before) = (server_rss()?, rss_kib(agent.pid())?);

    let (stop_tx, stop_rx) = watch::channel(false);
    let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut viewers = Vec::with_capacity(n);
    for (id, bytes) in sessions.iter().zip(&counters) {
        let url = Path::Ws(viewer_api.connect_session(*id).await?.url);
        let (bytes, stop) = (bytes.clone(), stop_rx.clone());
        viewers.push(tokio::spawn(
            async move { pipe::drain(&url, bytes, stop).await },
        ));
    }
    let counters_ref = &counters;
    wait_until(
        "every viewer to receive bytes",
        CONNECT_TIMEOUT,
        || async move {
            counters_ref
                .iter()
                .all(|c| c.load(Ordering::Relaxed) > 0)
                .then_some(())
        },
    )
    .await
    .with_context(logs)?;

    let total = || {
        counters
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let (bytes0, server_cpu0, agent_cpu0, t0) = (
        total(),
        server_cpu()?,
        cpu_secs(agent.pid())?,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(p.window_secs)).await;
    let (bytes1, server_cpu1, agent_cpu1, elapsed) =
        (total(), server_cpu()?, cpu_secs(agent.pid())?, t0.elapsed());
    let (server_after, agent_after) = (server_rss()?, rss_kib(agent.pid())?);

    // Keystrokes while everyone streams: through the tunnel, then straight to the same echo.
    let mut tunnel = pipe::round_trips(
        &Path::Ws(viewer_api.connect_session(echo_session).await?.url),
        p.round_trips,
        KEYSTROKE_BYTES,
    )
    .await
    .with_context(logs)?;
    let mut direct = pipe::round_trips(&Path::Tcp(echo), p.round_trips, KEYSTROKE_BYTES).await?;
    tunnel.sort_by(f64::total_cmp);
    direct.sort_by(f64::total_cmp);

    let _ = stop_tx.send(true);
    for v in viewers {
        v.await?.with_context(logs)?;
    }
    drop(agent);
    let gb = (bytes1 - bytes0) as f64 / 1e9;
    if gb <= 0.0 {
        bail!("nothing reached the viewers during the window\n{}", logs());
    }
    let per_viewer = |after: u64, before: u64| after.saturating_sub(before) as f64 / n as f64;
    Ok(Sample {
        server_kib: per_viewer(server_after, server_before),
        agent_kib: per_viewer(agent_after, agent_before),
        server_cpu_per_gb: (server_cpu1 - server_cpu0) / gb,
        agent_cpu_per_gb: (agent_cpu1 - agent_cpu0) / gb,
        relayed_mb_s: gb * 1000.0 / elapsed.as_secs_f64(),
        tunnel,
        direct,
    })
}

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0 || p.counts.contains(&0) || p.rate_kib == 0 || p.window_secs == 0 {
        bail!("runs, viewer counts, rate and window must be positive");
    }
    crate::agents::raise_open_files(4 * p.counts.iter().max().copied().unwrap_or(0) as u64)?;
    let chunk = p.rate_kib * 1024 / CHUNKS_PER_SEC as usize;
    let source = pipe::paced(chunk, Duration::from_millis(1000 / CHUNKS_PER_SEC)).await?;
    let echo = pipe::echo().await?;
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut rows = Vec::new();
    for redis_url in [None, Some(redis.url())] {
        for &n in &p.counts {
            let setup = format!(
                "{n} viewers, {}",
                if redis_url.is_some() {
                    "2 replicas, viewers on the other"
                } else {
                    "1 replica"
                }
            );
            println!("viewers: {setup} …");
            let mut samples = Vec::new();
            for _ in 0..p.runs {
                let sample =
                    one_run(bin, &pg, redis_url.as_deref(), n, source.addr, echo.addr, p).await?;
                println!(
                    "  server {:.1} KiB/viewer, agent {:.1} KiB/viewer, {:.0} MB/s relayed, \
                     keystroke p99 {:.2} ms (direct {:.2} ms)",
                    sample.server_kib,
                    sample.agent_kib,
                    sample.relayed_mb_s,
                    percentile(&sample.tunnel, 99.0),
                    percentile(&sample.direct, 99.0)
                );
                samples.push(sample);
            }
            rows.extend(rows_of(&setup, &samples));
        }
    }
    let notes = vec![
        format!(
            "Each session sends {} KiB/s in {CHUNKS_PER_SEC} chunks a second; CPU and bytes are counted over {} s \
             of streaming; {} keystroke round trips of {KEYSTROKE_BYTES} bytes per run, taken while the viewers stream.",
            p.rate_kib, p.window_secs, p.round_trips
        ),
        "Memory per viewer: resident memory with the viewers streaming minus before they connected, over \
         the viewer count (the replicas' summed; the simulated agent runs as its own process)."
            .into(),
        "Added latency: the tunnel's percentile minus the direct connection's, in the same run.".into(),
        "The viewers, the replicas, the agent and the session servers share this machine's CPUs.".into(),
    ];
    Ok((rows, notes))
}

fn rows_of(setup: &str, samples: &[Sample]) -> Vec<Row> {
    let each = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
    let plain = |metric: &str, unit: &str, values: Vec<f64>| Row {
        setup: setup.into(),
        metric: metric.into(),
        unit: unit.into(),
        value: Stat::of(values),
        reference: None,
    };
    let mut rows = vec![
        plain("server memory per viewer", "KiB", each(&|s| s.server_kib)),
        plain("agent memory per viewer", "KiB", each(&|s| s.agent_kib)),
        plain(
            "server CPU per GB relayed",
            "s",
            each(&|s| s.server_cpu_per_gb),
        ),
        plain(
            "agent CPU per GB relayed",
            "s",
            each(&|s| s.agent_cpu_per_gb),
        ),
        plain("relayed to all viewers", "MB/s", each(&|s| s.relayed_mb_s)),
    ];
    for q in [50.0, 99.0] {
        let tunnel = Stat::of(each(&|s| percentile(&s.tunnel, q)));
        let direct = Stat::of(each(&|s| percentile(&s.direct, q)));
        rows.push(Row {
            setup: setup.into(),
            metric: format!("keystroke round trip p{q}"),
            unit: "ms".into(),
            reference: Some(Reference {
                name: "direct TCP".into(),
                ratio: tunnel.median / direct.median,
                value: direct,
            }),
            value: tunnel,
        });
        rows.push(plain(
            &format!("added latency p{q}"),
            "ms",
            each(&|s| percentile(&s.tunnel, q) - percentile(&s.direct, q)),
        ));
    }
    rows
}
