//! Scenario `agents`: many simulated agents connected to one replica, heartbeating. Reports the
//! replica's resident memory per connected agent (RSS after all connected minus RSS before, over
//! N) and its CPU time per 1,000 heartbeats/s (utime + stime from /proc over a window). The
//! heartbeat writes land in PostgreSQL, whose CPU is not counted here. No same-run reference;
//! issue 6's target is ≤ 32 KiB per agent.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_testkit::PgCluster;
use tokio::sync::watch;

use crate::agent;
use crate::procs::Replica;
use crate::report::{Row, Stat};

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub runs: usize,
    pub counts: Vec<usize>,
    pub heartbeat_secs: u64,
    pub window_secs: u64,
}

/// Resident memory of `pid` in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}

/// CPU seconds (user + system) `pid` has used.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the line (indices 11 and 12 after the name), in
    // clock ticks of 1/100 s (USER_HZ on Linux).
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn open_files_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0 || p.counts.contains(&0) || p.heartbeat_secs == 0 || p.window_secs == 0 {
        bail!("runs, agent counts, heartbeat and window must be positive");
    }
    let most = p.counts.iter().copied().max().unwrap_or(0);
    if let Some(limit) = open_files_limit()
        && limit < most + 256
    {
        bail!("{most} agents need more than the open-files limit {limit}: raise it with ulimit -n");
    }
    let pg = PgCluster::start()?;
    let mut rows = Vec::new();
    for &n in &p.counts {
        let (mut per_agent, mut per_k) = (vec![], vec![]);
        for run in 0..p.runs {
            let (kib, cpu) = one_run(bin, &pg, n, p).await?;
            println!(
                "  {n} agents, run {}: {kib:.1} KiB/agent, {cpu:.3} CPU s/s per 1k heartbeats/s",
                run + 1
            );
            per_agent.push(kib);
            per_k.push(cpu);
        }
        let setup = format!("{n} agents, 1 replica");
        for (metric, unit, v) in [
            ("replica RSS per agent", "KiB", per_agent),
            ("replica CPU per 1,000 heartbeats/s", "CPU s/s", per_k),
        ] {
            rows.push(Row {
                setup: setup.clone(),
                metric: metric.into(),
                unit: unit.into(),
                value: Stat::of(v),
                reference: None,
            });
        }
    }
    let notes = vec![
        format!(
            "Agents heartbeat every {} s; CPU is the replica's user + system time over {} s once all \
             agents are connected, divided by the heartbeat rate in thousands per second. \
             PostgreSQL's CPU for the heartbeat writes is not included.",
            p.heartbeat_secs, p.window_secs
        ),
        "RSS per agent is (replica RSS with all agents connected − RSS before the first) ÷ agents, \
         a fresh replica and database per run."
            .into(),
    ];
    Ok((rows, notes))
}

/// One fresh replica with `n` agents: (KiB per agent, CPU s/s per 1,000 heartbeats/s).
async fn one_run(
    bin: &std::path::Path,
    pg: &PgCluster,
    n: usize,
    p: &Params,
) -> anyhow::Result<(f64, f64)> {
    let db = pg.create_database()?;
    let dir = tempfile::Builder::new()
        .prefix("streamspace-bench-")
        .tempdir()?;
    let interval = p.heartbeat_secs.to_string();
    let replica = Replica::start(
        bin,
        dir.path(),
        "bench-0",
        &db,
        &["--heartbeat-interval", &interval],
    )
    .await?;
    let api = replica.api()?;
    let pid = replica.pid();
    let mut keys = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        let batch = chunk.iter().map(|i| {
            let api = api.clone();
            let id = format!("bench-agent-{i}");
            async move { api.create_agent_key(&id).await.map(|k| (id, k.secret)) }
        });
        for key in futures_util::future::join_all(batch).await {
            keys.push(key?);
        }
    }
    let before = rss_kib(pid)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut agents = Vec::with_capacity(n);
    let start = Instant::now();
    for chunk in keys.chunks(32) {
        let batch = chunk.iter().map(|(id, key)| {
            agent::spawn(
                agent::Spec {
                    ws_url: replica.agent_ws_url(),
                    key: key.clone(),
                    agent_id: id.clone(),
                    heartbeat: Duration::from_secs(p.heartbeat_secs),
                    targets: Default::default(),
                },
                stop_rx.clone(),
            )
        });
        for task in futures_util::future::join_all(batch).await {
            agents.push(task.with_context(|| replica.logs())?);
        }
    }
    println!(
        "  {n} agents connected in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // One heartbeat interval for the connections to settle.
    tokio::time::sleep(Duration::from_secs(p.heartbeat_secs)).await;
    let cpu0 = cpu_secs(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(p.window_secs)).await;
    let cpu = (cpu_secs(pid)? - cpu0) / t0.elapsed().as_secs_f64();
    let after = rss_kib(pid)?;
    let _ = stop_tx.send(true);
    for task in agents {
        task.await?.with_context(|| replica.logs())?;
    }
    let beats_per_sec_k = n as f64 / p.heartbeat_secs as f64 / 1000.0;
    Ok((
        after.saturating_sub(before) as f64 / n as f64,
        cpu / beats_per_sec_k,
    ))
}
