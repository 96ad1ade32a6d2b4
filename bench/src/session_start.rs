//! Scenario `session-start`: the `process` runtime for real — a `streamspace agent` process
//! starting Xvnc and the seeded `xterm` template — timed from `POST /api/v1/sessions` to the
//! session being `running` through the API (the agent reports running once its VNC server
//! answers). Sessions start one after another; each run stops them all before the next.
//! No reference exists for this one; issue 6 sets a target (p50 < 1 s).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_client::Client;
use streamspace_proto::api::SessionState;
use streamspace_testkit::{PgCluster, tagged};

use crate::procs::Replica;
use crate::report::{Row, Stat, percentile};

const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub runs: usize,
    pub sessions: usize,
}

/// The agent process and everything it started (Xvnc, xterm), killed by tag when dropped.
struct AgentProc {
    child: Child,
    tag: String,
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tagged::kill_tagged(&self.tag);
    }
}

async fn wait_state(api: &Client, id: uuid::Uuid, want: SessionState) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let state = api.get_session(id).await?.state;
        if state == want {
            return Ok(());
        }
        if state.is_terminal() && want != state {
            bail!("session {id} ended {state} while waiting for {want}");
        }
        if start.elapsed() > START_TIMEOUT {
            bail!("session {id} not {want} in {START_TIMEOUT:?} (still {state})");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0 || p.sessions == 0 {
        bail!("runs and sessions must be positive");
    }
    let pg = PgCluster::start()?;
    let db = pg.create_database()?;
    let dir = tempfile::Builder::new()
        .prefix("streamspace-bench-")
        .tempdir()?;
    let replica = Replica::start(bin, dir.path(), "bench-0", &db, &[]).await?;
    let api = replica.api()?;
    let key = api.create_agent_key("bench-process").await?.secret;
    let tag = tagged::new_tag();
    let child = Command::new(bin)
        .args([
            "agent",
            "--server",
            &replica.url,
            "--agent-id",
            "bench-process",
        ])
        .args(["--key", &key, "--runtime", "process", "--state-dir"])
        .arg(dir.path().join("agent-state"))
        .args(["--max-sessions", &p.sessions.to_string()])
        .env(tagged::TAG_VAR, &tag)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("agent.err"))?)
        .spawn()
        .context("starting the agent")?;
    let _agent = AgentProc { child, tag };
    let agent_log = || std::fs::read_to_string(dir.path().join("agent.err")).unwrap_or_default();
    streamspace_testkit::wait_until("the agent to be online", START_TIMEOUT, || async {
        let agent = api.get_agent("bench-process").await.ok()?;
        (agent.status == streamspace_proto::api::AgentStatus::Online).then_some(())
    })
    .await
    .with_context(agent_log)?;

    let (mut p50, mut p99, mut per_minute) = (vec![], vec![], vec![]);
    for run in 0..p.runs {
        let mut times = Vec::new();
        let mut ids = Vec::new();
        let batch = Instant::now();
        for _ in 0..p.sessions {
            let t0 = Instant::now();
            let session = api.create_session("xterm").await?;
            wait_state(&api, session.id, SessionState::Running)
                .await
                .with_context(|| format!("{}\n{}", replica.logs(), agent_log()))?;
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            ids.push(session.id);
        }
        let rate = p.sessions as f64 * 60.0 / batch.elapsed().as_secs_f64();
        times.sort_by(f64::total_cmp);
        let (a, b) = (percentile(&times, 50.0), percentile(&times, 99.0));
        println!(
            "  run {}: p50 {a:.0} ms, p99 {b:.0} ms, {rate:.0} sessions/min",
            run + 1
        );
        p50.push(a);
        p99.push(b);
        per_minute.push(rate);
        for id in ids {
            api.stop_session(id).await?;
            wait_state(&api, id, SessionState::Terminated).await?;
        }
    }
    let row = |metric: &str, unit: &str, v: Vec<f64>| Row {
        setup: "1 replica, process runtime".into(),
        metric: metric.into(),
        unit: unit.into(),
        value: Stat::of(v),
        reference: None,
    };
    let rows = vec![
        row("start p50", "ms", p50),
        row("start p99", "ms", p99),
        row("sessions started, one at a time", "/min", per_minute),
    ];
    let notes = vec![
        format!(
            "{} sessions of the seeded `xterm` template (Xvnc + xterm) per run, started one after \
             another; time is `POST /api/v1/sessions` → `running` seen by polling every 5 ms.",
            p.sessions
        ),
        "No same-run reference: issue 6's target is p50 < 1 s.".into(),
    ];
    Ok((rows, notes))
}
