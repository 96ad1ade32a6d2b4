//! `streamspace-bench`: the benchmark harness. Run on demand, never in CI (CI only builds it).
//!
//! `cargo build --release -p streamspace && cargo run -p streamspace-bench --release -- commands`
//!
//! Each scenario starts what it needs itself — a throwaway PostgreSQL and Redis (from the testkit,
//! a dev-only crate this unshipped binary may use), `streamspace server` replicas from
//! `target/release`, simulated agents as in-process WebSocket clients — measures its reference in
//! the same run, prints a table, writes JSON under `target/bench/`, and appends a section to
//! `docs/BENCHMARKS.md`. Everything listens on loopback and every loop is bounded.

mod agent;
mod agents;
mod chart;
mod commands;
mod failover;
mod machine;
mod pgbench;
mod pipe;
mod procs;
mod report;
mod session_start;
mod tunnel;
mod viewers;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Command throughput and latency through the API and simulated agents, vs pgbench.
    Commands,
    /// Viewer-stream throughput and round trips through server and agent, vs websockify and TCP.
    Tunnel,
    /// Many heartbeating agents on one replica: memory per agent and CPU per heartbeat; then the
    /// time for them to reconnect to the other replicas after theirs is killed.
    Agents,
    /// Process-runtime session start time (real agent, Xvnc, xterm).
    SessionStart,
    /// Many viewers streaming at once, each from its own session: memory per viewer, CPU per
    /// GB relayed, and the latency a keystroke round trip gains through the tunnel.
    Viewers,
    /// Every implemented scenario.
    All,
}

#[derive(Debug, Parser)]
#[command(about = "StreamSpace benchmarks, each against a reference measured in the same run")]
struct Cli {
    scenario: Scenario,
    /// Repeated runs per measurement (medians and ranges are over these).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// `streamspace` binary to start replicas from (default: target/release/streamspace).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Simulated agents (commands): pings are spread over them.
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Concurrent API clients (commands); also pgbench's client count.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Commands per run (commands).
    #[arg(long, default_value_t = 2000)]
    commands: usize,
    /// How a client learns that its command finished (commands): `create` — in the same
    /// request, `POST /api/v1/agents/{id}/ping?wait=…`; `read` — `POST`, then one waiting
    /// `GET /api/v1/commands/{id}?wait=…`; `poll` — `POST`, then `GET` every `--poll-ms`.
    #[arg(long, value_enum, default_value_t = commands::Follow::Create)]
    follow: commands::Follow,
    /// Worker threads of each replica (`streamspace --worker-threads`; default: one per CPU)
    /// (commands).
    #[arg(long)]
    replica_threads: Option<u16>,
    /// Milliseconds between polls with `--follow poll` (commands).
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// Topologies to measure (commands): 1 = one replica; N > 1 = N replicas with the agents on
    /// the first and the clients on the others.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    replicas: Vec<usize>,
    /// How PostgreSQL commits (commands): `fast` (fsync off, as in the tests) and/or `durable`
    /// (fsync and synchronous_commit on); each setting is measured with pgbench under it.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "fast,durable"
    )]
    commits: Vec<commands::Commits>,
    /// Megabytes (10⁶ bytes) per bulk transfer (tunnel).
    #[arg(long, default_value_t = 200)]
    bulk_mb: usize,
    /// Small-message round trips per run (tunnel).
    #[arg(long, default_value_t = 2000)]
    round_trips: usize,
    /// Bytes per small message (tunnel).
    #[arg(long, default_value_t = 64)]
    message_bytes: usize,
    /// Record every viewing (tunnel): measures what recording costs the stream.
    #[arg(long)]
    record: bool,
    /// Plain replicas, replicas serving TLS, or both (tunnel); websockify is measured the same
    /// way.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "plain,tls")]
    security: Vec<tunnel::Security>,
    /// Sessions started per run (session-start).
    #[arg(long, default_value_t = 20)]
    sessions: usize,
    /// Runtimes to start sessions with (session-start): `process` and/or `docker` (against a
    /// throwaway Podman engine).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "process,docker"
    )]
    runtimes: Vec<session_start::Runtime>,
    /// Agent counts to measure (agents).
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    agent_counts: Vec<usize>,
    /// Seconds between each simulated agent's heartbeats (agents).
    #[arg(long, default_value_t = 5)]
    heartbeat_secs: u64,
    /// Seconds over which CPU time is measured (agents, viewers).
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// Seconds the agents of the killed replica may take to be back before the run fails
    /// (agents).
    #[arg(long, default_value_t = 120)]
    reconnect_timeout_secs: u64,
    /// Viewer counts to measure (viewers).
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    viewer_counts: Vec<usize>,
    /// KiB per second each session sends its viewer (viewers).
    #[arg(long, default_value_t = 256)]
    viewer_rate_kib: usize,
    /// Keystroke round trips per run while the viewers stream (viewers).
    #[arg(long, default_value_t = 1000)]
    keystrokes: usize,
    /// Print and write JSON, but do not append to docs/BENCHMARKS.md.
    #[arg(long)]
    no_docs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The `viewers` scenario runs its simulated agent as a child process of this binary.
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, spec] = args.as_slice()
        && mode == "sim-agent"
    {
        return viewers::sim_agent_main(spec).await;
    }
    let cli = Cli::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate lives inside the workspace")?
        .to_path_buf();
    let bin = cli.bin.clone().unwrap_or_else(procs::default_binary);
    let command = format!(
        "cargo run -p streamspace-bench --release -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    let machine = machine::Machine::read();
    println!("machine: {}", machine.describe());
    if matches!(cli.scenario, Scenario::Commands | Scenario::All) {
        let params = commands::Params {
            agents: cli.agents,
            clients: cli.clients,
            commands: cli.commands,
            runs: cli.runs,
            follow: cli.follow,
            replica_threads: cli.replica_threads,
            poll_ms: cli.poll_ms,
            replicas: cli.replicas.clone(),
            commits: cli.commits.clone(),
        };
        let (rows, notes) = commands::run(&bin, &params).await?;
        let parameters = serde_json::to_value(&params)?;
        let report = report_of("commands", &command, &machine, parameters, notes, rows);
        record(&report, &root, cli.no_docs)?;
    }
    if matches!(cli.scenario, Scenario::Tunnel | Scenario::All) {
        let params = tunnel::Params {
            runs: cli.runs,
            bulk_mb: cli.bulk_mb,
            round_trips: cli.round_trips,
            message_bytes: cli.message_bytes,
            record: cli.record,
            security: cli.security.clone(),
        };
        println!("tunnel: {} runs …", params.runs);
        let (rows, notes) = tunnel::run(&bin, &params).await?;
        let parameters = serde_json::to_value(&params)?;
        let report = report_of("tunnel", &command, &machine, parameters, notes, rows);
        record(&report, &root, cli.no_docs)?;
    }
    if matches!(cli.scenario, Scenario::Agents | Scenario::All) {
        let params = agents::Params {
            runs: cli.runs,
            counts: cli.agent_counts.clone(),
            heartbeat_secs: cli.heartbeat_secs,
            window_secs: cli.window_secs,
            reconnect_timeout_secs: cli.reconnect_timeout_secs,
        };
        println!("agents: {} runs per count …", params.runs);
        let (rows, notes) = agents::run(&bin, &params).await?;
        let parameters = serde_json::to_value(&params)?;
        let report = report_of("agents", &command, &machine, parameters, notes, rows);
        record(&report, &root, cli.no_docs)?;
    }
    if matches!(cli.scenario, Scenario::SessionStart | Scenario::All) {
        let params = session_start::Params {
            runs: cli.runs,
            sessions: cli.sessions,
            runtimes: cli.runtimes.clone(),
        };
        println!("session start: {} runs …", params.runs);
        let (rows, notes) = session_start::run(&bin, &params).await?;
        let parameters = serde_json::to_value(&params)?;
        let report = report_of("session-start", &command, &machine, parameters, notes, rows);
        record(&report, &root, cli.no_docs)?;
    }
    if matches!(cli.scenario, Scenario::Viewers | Scenario::All) {
        let params = viewers::Params {
            runs: cli.runs,
            counts: cli.viewer_counts.clone(),
            rate_kib: cli.viewer_rate_kib,
            window_secs: cli.window_secs,
            round_trips: cli.keystrokes,
        };
        println!("viewers: {} runs per count …", params.runs);
        let (rows, notes) = viewers::run(&bin, &params).await?;
        let parameters = serde_json::to_value(&params)?;
        let report = report_of("viewers", &command, &machine, parameters, notes, rows);
        record(&report, &root, cli.no_docs)?;
    }
    Ok(())
}

fn report_of(
    scenario: &str,
    command: &str,
    machine: &machine::Machine,
    parameters: serde_json::Value,
    notes: Vec<String>,
    rows: Vec<report::Row>,
) -> report::Report {
    report::Report {
        scenario: scenario.into(),
        command: command.into(),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: machine.clone(),
        parameters,
        notes,
        rows,
    }
}

fn record(report: &report::Report, root: &Path, no_docs: bool) -> anyhow::Result<()> {
    println!("\n{}", report.table());
    let json = report.write_json(root)?;
    println!("JSON: {}", json.display());
    if !no_docs {
        let svg = chart::draw(report, root)?;
        println!("chart: {}", svg.display());
        let md = report.append_markdown(root, Some(&svg))?;
        println!("appended to {}", md.display());
    }
    Ok(())
}
