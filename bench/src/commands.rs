//! Scenario `commands`: end-to-end command throughput and latency.
//!
//! N simulated agents answer `ping` at once; C concurrent API clients each create pings
//! (`POST /api/v1/agents/{id}/ping`) and follow each until it is `completed` (in the same
//! request with `?wait=`, by a waiting read, or by polling: [`Follow`]). Latency is
//! create → completed visible through the API. With several replicas the
//! agents all connect to the first and the clients only talk to the others, so every command
//! crosses replicas. The reference, measured in the same run against the same PostgreSQL, is
//! `pgbench` doing the row writes the store made per command in `agent_commands` (an INSERT and
//! the UPDATEs PostgreSQL counted), each its own transaction; where those are fewer than a
//! command's life as separate writes (INSERT, claim, complete) — a command created on the
//! replica its agent is connected to is claimed in its insert — also pgbench doing that.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_client::Client;
use streamspace_proto::api::CommandStatus;
use streamspace_testkit::PgCluster;
use streamspace_testkit::redis::RedisServer;
use tokio::sync::watch;

use crate::agent;
use crate::pgbench;
use crate::procs::Replica;
use crate::report::{Reference, Row, Stat, percentile};

/// Agents heartbeat this often (the server's default interval is 10 s).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// UPDATEs of a command's life as separate writes: claim and complete (the ack coalesced).
const LIFECYCLE_UPDATES: usize = 2;
/// One command taking longer than this fails the run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How a client learns that its command finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Follow {
    /// `POST /api/v1/agents/{id}/ping?wait=…` answers with the finished command.
    Create,
    /// `POST …/ping`, then `GET /api/v1/commands/{id}?wait=…`.
    Read,
    /// `POST …/ping`, then `GET /api/v1/commands/{id}` every `poll_ms`.
    Poll,
}

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub agents: usize,
    pub clients: usize,
    pub commands: usize,
    pub runs: usize,
    pub follow: Follow,
    pub replica_threads: Option<u16>,
    pub poll_ms: u64,
    pub replicas: Vec<usize>,
    pub commits: Vec<Commits>,
}

/// Per-run results of one topology.
struct Measured {
    per_second: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
}

/// How PostgreSQL commits, for the servers and pgbench alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Commits {
    /// `fsync`, `synchronous_commit` and `full_page_writes` off, as in the tests: the CPU's
    /// limit, not the disk's.
    Fast,
    /// All three on, as a production database runs: every commit waits for the disk.
    Durable,
}

pub async fn run(bin: &Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.agents == 0 || p.clients == 0 || p.commands < p.clients || p.runs == 0 {
        bail!("need at least one agent, one client, one run, and as many commands as clients");
    }
    if p.commits.is_empty() {
        bail!("need at least one commit setting (--commits fast,durable)");
    }
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &commits in &p.commits {
        let (mut r, n) = run_commits(bin, p, commits).await?;
        rows.append(&mut r);
        // The notes are the same for each setting but the row-write counts.
        if notes.is_empty() {
            notes = n;
        } else if let Some(writes) = n.into_iter().find(|n| n.starts_with("Row writes")) {
            notes.push(writes);
        }
    }
    Ok((rows, notes))
}

async fn run_commits(
    bin: &Path,
    p: &Params,
    commits: Commits,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let (pg, suffix) = match commits {
        Commits::Fast => (PgCluster::start()?, ""),
        Commits::Durable => (PgCluster::start_durable()?, ", durable commits"),
    };
    let needs_redis = p.replicas.iter().any(|&n| n > 1);
    let redis = if needs_redis {
        Some(RedisServer::start()?)
    } else {
        None
    };
    let mut rows = Vec::new();
    let mut reference_db = None;
    let mut measured = Vec::new();
    let mut writes = Vec::new();
    for &n in &p.replicas {
        let db = pg.create_database()?;
        println!("commands: {n} replica(s){suffix}, {} runs …", p.runs);
        let m = topology(bin, &db, redis.as_ref().map(RedisServer::url), n, p).await?;
        // The warm-up's commands and the measured ones.
        let commands = p.clients + p.runs * p.commands;
        let updates = updates_per_command(&db, commands).await?;
        println!("  {updates:.2} UPDATEs of agent_commands per command");
        writes.push(format!("{n} replica(s): {updates:.2}"));
        measured.push((n, m, updates));
        reference_db.get_or_insert(db);
    }
    // The servers are gone: the database serves pgbench alone. The reference is pgbench doing
    // the writes measured; where those are fewer than a command's whole life as separate
    // writes — created, claimed, completed (the ack coalesced): a command created where its
    // agent is connected is claimed in its insert — a second row sets the figure against that
    // too, to compare with the runs before. The scripts take turns, run by run.
    let db = reference_db.context("no topology was measured")?;
    let same_writes = |updates: f64| (updates.round() as usize).clamp(1, 3);
    let mut scripts = std::collections::BTreeSet::from([LIFECYCLE_UPDATES]);
    scripts.extend(measured.iter().map(|(_, _, u)| same_writes(*u)));
    println!(
        "commands: pgbench references (1 INSERT + {scripts:?} UPDATEs), {} runs …",
        p.runs
    );
    let mut tps: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    for _ in 0..p.runs {
        for &updates in &scripts {
            tps.entry(updates)
                .or_default()
                .push(pgbench::command_writes(
                    &db, p.clients, p.commands, updates,
                )?);
        }
    }
    let references: std::collections::BTreeMap<usize, Stat> =
        tps.into_iter().map(|(k, v)| (k, Stat::of(v))).collect();
    let reference = |updates: usize, per_second: &Stat| -> anyhow::Result<Reference> {
        let tps = references
            .get(&updates)
            .context("a pgbench reference was not measured")?;
        let what = match updates {
            1 => "1 INSERT (claimed) + 1 UPDATE (complete)",
            2 => "1 INSERT + 2 UPDATEs (claim, complete)",
            _ => "1 INSERT + 3 UPDATEs (claim, ack, complete)",
        };
        Ok(Reference {
            name: format!("pgbench, {what} per command"),
            value: tps.clone(),
            ratio: per_second.median / tps.median,
        })
    };
    for (n, m, updates) in measured {
        let setup = if n == 1 {
            format!("1 replica{suffix}")
        } else {
            format!("{n} replicas, cross-replica{suffix}")
        };
        let per_second = Stat::of(m.per_second);
        rows.push(Row {
            setup: setup.clone(),
            metric: "commands completed".into(),
            unit: "/s".into(),
            value: per_second.clone(),
            reference: Some(reference(same_writes(updates), &per_second)?),
        });
        if same_writes(updates) < LIFECYCLE_UPDATES {
            rows.push(Row {
                setup: setup.clone(),
                metric: "commands completed, vs pgbench writing insert, claim, complete".into(),
                unit: "/s".into(),
                value: per_second.clone(),
                reference: Some(reference(LIFECYCLE_UPDATES, &per_second)?),
            });
        }
        for (metric, v) in [("latency p50", m.p50_ms), ("latency p99", m.p99_ms)] {
            rows.push(Row {
                setup: setup.clone(),
                metric: metric.into(),
                unit: "ms".into(),
                value: Stat::of(v),
                reference: None,
            });
        }
    }
    let follow = match p.follow {
        Follow::Create => "Latency is create → `completed` in one request per command, \
            `POST /api/v1/agents/{id}/ping?wait=…`, which answers as soon as the agent has answered."
            .to_owned(),
        Follow::Read => "Latency is create → `completed`: `POST /api/v1/agents/{id}/ping`, then one \
            waiting read, `GET /api/v1/commands/{id}?wait=…`, which answers as soon as the command finishes."
            .to_owned(),
        Follow::Poll => format!(
            "Latency is create → `completed` seen by polling `GET /api/v1/commands/{{id}}` every {} ms: \
             it includes up to one poll interval, and the polling requests are part of the load.",
            p.poll_ms
        ),
    };
    let threads = match p.replica_threads {
        Some(n) => format!("Each replica runs {n} worker thread(s) (`--worker-threads {n}`)."),
        None => "Each replica runs tokio's default of one worker thread per CPU.".to_owned(),
    };
    let notes = vec![
        follow,
        threads,
        format!(
            "Row writes per command{suffix}, counted by PostgreSQL's statistics over each topology's \
             runs: 1 INSERT and {} UPDATEs of `agent_commands` (an agent's ack is not written when \
             its result follows within 10 ms; a command created on the replica its agent is \
             connected to is claimed in its insert). \"commands completed\" is set against pgbench \
             doing the writes measured (their mean, rounded); where those are fewer than a \
             command's whole life one row write at a time — inserted, claimed, completed — a \
             second row sets the same figure against pgbench doing that, as the reference did \
             before commands were claimed in their insert.",
            writes.join(", ")
        ),
        "Everything (PostgreSQL, Redis, the replicas, the agents, the clients, pgbench) \
         shares this machine's CPUs, so the numbers are lower bounds for a real deployment. \
         PostgreSQL runs with fsync, synchronous_commit and full_page_writes off unless the setup \
         says \"durable commits\" (all three on, servers and pgbench alike)."
            .into(),
    ];
    Ok((rows, notes))
}

/// UPDATEs per INSERT of `agent_commands` in `db`, once the statistics count all `commands`
/// (backends report when they exit, just after the replicas did).
async fn updates_per_command(db: &str, commands: usize) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ins, upd) = pgbench::command_table_writes(db)?;
        if ins >= commands as u64 {
            return Ok(upd as f64 / ins as f64);
        }
        if Instant::now() > deadline {
            bail!("the statistics count {ins} commands inserted, not {commands}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn topology(
    bin: &Path,
    db: &str,
    redis_url: Option<String>,
    n: usize,
    p: &Params,
) -> anyhow::Result<Measured> {
    let mut extra: Vec<String> = Vec::new();
    if let Some(threads) = p.replica_threads {
        extra.extend(["--worker-threads".into(), threads.to_string()]);
    }
    if n > 1 {
        extra.push("--redis-url".into());
        extra.push(redis_url.context("several replicas need Redis")?);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut replicas = Vec::new();
    for i in 0..n {
        replicas.push(Replica::start(bin, &format!("bench-{i}"), db, &extra).await?);
    }
    let logs = |replicas: &[Replica]| {
        replicas
            .iter()
            .map(Replica::logs)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let admin = replicas[0].api()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut agents = Vec::new();
    let mut ids = Vec::new();
    for a in 0..p.agents {
        let id = format!("bench-agent-{a}");
        let key = admin.create_agent_key(&id).await?.secret;
        let spec = agent::Spec {
            ws_url: replicas[0].agent_ws_url(),
            key,
            agent_id: id.clone(),
            heartbeat: HEARTBEAT,
            targets: Default::default(),
            max_sessions: agent::MAX_SESSIONS,
            tls: None,
        };
        let task = agent::spawn(spec, stop_rx.clone()).await?;
        agents.push(task);
        ids.push(id);
    }
    let targets: Vec<Client> = if n == 1 {
        vec![admin.clone()]
    } else {
        replicas[1..]
            .iter()
            .map(Replica::api)
            .collect::<anyhow::Result<_>>()?
    };
    let follow = (p.follow, Duration::from_millis(p.poll_ms));
    // Warm-up (connection pools, prepared statements), not recorded.
    one_run(&targets, &ids, p.clients, p.clients, follow)
        .await
        .with_context(|| logs(&replicas))?;
    let mut m = Measured {
        per_second: vec![],
        p50_ms: vec![],
        p99_ms: vec![],
    };
    for run in 0..p.runs {
        let (rate, mut lat) = one_run(&targets, &ids, p.clients, p.commands, follow)
            .await
            .with_context(|| logs(&replicas))?;
        lat.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        println!(
            "  run {}: {rate:.0} commands/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
            run + 1
        );
        m.per_second.push(rate);
        m.p50_ms.push(p50);
        m.p99_ms.push(p99);
    }
    let _ = stop_tx.send(true);
    for task in agents {
        task.await?.with_context(|| logs(&replicas))?;
    }
    Ok(m)
}

/// `commands` pings spread over `clients` concurrent clients; returns commands/s and every
/// command's latency in milliseconds.
async fn one_run(
    targets: &[Client],
    agent_ids: &[String],
    clients: usize,
    commands: usize,
    (follow, poll): (Follow, Duration),
) -> anyhow::Result<(f64, Vec<f64>)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let api = targets[c % targets.len()].clone();
        let count = commands / clients + usize::from(c < commands % clients);
        let ids: Vec<String> = (0..count)
            .map(|i| agent_ids[(c + i * clients) % agent_ids.len()].clone())
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(ids.len());
            for id in ids {
                let t0 = Instant::now();
                let created = match follow {
                    Follow::Create => api.ping_agent_and_wait(&id, COMMAND_TIMEOUT).await?,
                    Follow::Read | Follow::Poll => api.ping_agent(&id).await?,
                };
                let mut status = created.status;
                if follow == Follow::Read && status != CommandStatus::Completed {
                    status = api
                        .wait_for_command(created.command_id, COMMAND_TIMEOUT)
                        .await?
                        .status;
                }
                while status != CommandStatus::Completed {
                    if status == CommandStatus::Failed {
                        bail!("ping {} to {id} failed", created.command_id);
                    }
                    if t0.elapsed() > COMMAND_TIMEOUT {
                        bail!(
                            "ping {} to {id} not completed in {COMMAND_TIMEOUT:?}",
                            created.command_id
                        );
                    }
                    tokio::time::sleep(poll).await;
                    status = api.get_command(created.command_id).await?.status;
                }
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::with_capacity(commands);
    for task in tasks {
        all.extend(task.await??);
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    Ok((rate, all))
}
