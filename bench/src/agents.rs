//! Scenario `agents`: many simulated agents connected to one replica, heartbeating. Reports the
//! replica's resident memory per connected agent (RSS after all connected minus RSS before, over
//! N) and its CPU time per 1,000 heartbeats/s (utime + stime from /proc over a window). The
//! heartbeat writes land in PostgreSQL, whose CPU is not counted here. Then, with three replicas,
//! the time for the agents of a killed replica to register again on the survivors (see
//! [`crate::failover`]). No same-run reference; issue 6's target is ≤ 32 KiB per agent.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_client::Client;
use streamspace_testkit::PgCluster;
use tokio::sync::watch;

use crate::agent;
use crate::failover;
use crate::procs::Replica;
use crate::report::{Row, Stat, percentile};

/// Open files the harness needs beyond one per agent (API clients, PostgreSQL, Redis, logs).
const SPARE_FILES: u64 = 512;

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub runs: usize,
    pub counts: Vec<usize>,
    pub heartbeat_secs: u64,
    pub window_secs: u64,
    /// How long the agents of the killed replica may take to be back before the run fails.
    pub reconnect_timeout_secs: u64,
}

/// Resident memory of `pid` in KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}

/// CPU seconds (user + system) `pid` has used.
pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
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

/// Raises this process's soft open-files limit to its hard limit when `needed` is more than the
/// soft limit allows. The replicas the harness starts inherit the raised limit.
pub(crate) fn raise_open_files(needed: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).context("reading the open-files limit")?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        bail!(
            "this run needs {needed} open files per process but the hard limit is {hard}; raise \
             the hard limit (as root: `ulimit -Hn {needed}`, or LimitNOFILE= / limits.conf) and \
             run again"
        );
    }
    // An unlimited hard limit cannot be the soft one for open files (the kernel caps it).
    let target = if hard == RLIM_INFINITY { needed } else { hard };
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)
        .with_context(|| format!("raising the open-files limit from {soft} to {target}"))?;
    println!("open-files limit raised from {soft} to {target}");
    Ok(())
}

/// One agent key per simulated agent `bench-agent-{i}`: (agent id, secret), in order.
pub(crate) async fn create_keys(api: &Client, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut keys = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        let batch = chunk.iter().map(|i| {
            let id = format!("bench-agent-{i}");
            async move { api.create_agent_key(&id).await.map(|k| (id, k.secret)) }
        });
        for key in futures_util::future::join_all(batch).await {
            keys.push(key?);
        }
    }
    Ok(keys)
}

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0
        || p.counts.contains(&0)
        || p.heartbeat_secs == 0
        || p.window_secs == 0
        || p.reconnect_timeout_secs == 0
    {
        bail!("runs, agent counts, heartbeat, window and reconnect timeout must be positive");
    }
    let most = p.counts.iter().copied().max().unwrap_or(0);
    raise_open_files(most as u64 + SPARE_FILES)?;
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
        rows.extend(failover_rows(bin, &pg, n, p).await?);
    }
    let (backoff_min, backoff_max) = failover::backoff_bounds();
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
        format!(
            "Reconnect: {} replicas sharing PostgreSQL and Redis (fresh per run), every agent \
             registered on the first, which is then SIGKILLed. The agents know all three URLs and \
             move as the real agent does: another server, chosen at random, after each lost \
             connection, after a wait from its backoff (full jitter, {} ms doubling to {} s) — \
             so they spread over the two survivors. Per agent: kill → welcome from a \
             survivor. All back: kill → the API of a survivor first lists every agent online \
             on a survivor at a newer epoch (polled every {} ms, so up to one poll late); the \
             Redis owner records are then checked to agree.",
            failover::REPLICAS,
            backoff_min.as_millis(),
            backoff_max.as_secs(),
            failover::POLL.as_millis()
        ),
    ];
    Ok((rows, notes))
}

/// `p.runs` failovers with `n` agents: per-agent reconnect p50/p99 and the time until all are
/// back, as table rows.
async fn failover_rows(
    bin: &std::path::Path,
    pg: &PgCluster,
    n: usize,
    p: &Params,
) -> anyhow::Result<Vec<Row>> {
    let (mut p50, mut p99, mut all) = (vec![], vec![], vec![]);
    for run in 0..p.runs {
        let m = failover::one_run(
            bin,
            pg,
            n,
            Duration::from_secs(p.heartbeat_secs),
            Duration::from_secs(p.reconnect_timeout_secs),
        )
        .await
        .with_context(|| format!("reconnecting {n} agents after their replica was killed"))?;
        let (a, b) = (
            percentile(&m.per_agent_ms, 50.0),
            percentile(&m.per_agent_ms, 99.0),
        );
        let last = m.per_agent_ms.last().copied().unwrap_or(f64::NAN);
        println!(
            "  {n} agents, failover run {}: p50 {a:.0} ms, p99 {b:.0} ms, last welcome {last:.0} \
             ms, all back (API) {:.2} s; on {:?}; loss noticed p50 {:.0} ms, p99 {:.0} ms",
            run + 1,
            m.all_back_secs,
            m.spread,
            percentile(&m.noticed_ms, 50.0),
            percentile(&m.noticed_ms, 99.0),
        );
        let deciles: Vec<String> = [10.0, 25.0, 75.0, 90.0]
            .iter()
            .map(|&q| format!("p{q:.0} {:.0}", percentile(&m.per_agent_ms, q)))
            .collect();
        println!(
            "    per agent (ms): {}; survivors' CPU until all back: {:?} CPU s",
            deciles.join(", "),
            m.survivor_cpu_secs
        );
        if !m.failures.is_empty() {
            println!("    lost connections and failed attempts: {:?}", m.failures);
        }
        if !m.replica_warnings.is_empty() {
            println!(
                "    the survivors logged {} warnings/errors, first: {:?}",
                m.replica_warnings.len(),
                &m.replica_warnings[..m.replica_warnings.len().min(3)]
            );
        }
        p50.push(a);
        p99.push(b);
        all.push(m.all_back_secs);
    }
    let setup = format!("{n} agents, {} replicas, first killed", failover::REPLICAS);
    Ok([
        ("reconnect p50 per agent", "ms", p50),
        ("reconnect p99 per agent", "ms", p99),
        ("all agents back, seen through the API", "s", all),
    ]
    .into_iter()
    .map(|(metric, unit, v)| Row {
        setup: setup.clone(),
        metric: metric.into(),
        unit: unit.into(),
        value: Stat::of(v),
        reference: None,
    })
    .collect())
}

/// One fresh replica with `n` agents: (KiB per agent, CPU s/s per 1,000 heartbeats/s).
async fn one_run(
    bin: &std::path::Path,
    pg: &PgCluster,
    n: usize,
    p: &Params,
) -> anyhow::Result<(f64, f64)> {
    let db = pg.create_database()?;
    let interval = p.heartbeat_secs.to_string();
    let replica = Replica::start(bin, "bench-0", &db, &["--heartbeat-interval", &interval]).await?;
    let pid = replica.pid();
    let keys = create_keys(&replica.api()?, n).await?;
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
                    max_sessions: agent::MAX_SESSIONS,
                    tls: None,
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
