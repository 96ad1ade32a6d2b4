//! Scenario `session-start`: the `process` runtime for real — a `streamspace agent` process
//! starting Xvnc and the seeded `xterm` template — timed from `POST /api/v1/sessions` to the
//! session being `running` through the API (the agent reports running once its VNC server
//! answers). Sessions start one after another; each run stops them all before the next.
//! No reference exists for this one; issue 6 sets a target (p50 < 1 s).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_client::Client;
use streamspace_proto::api::SessionState;
use streamspace_testkit::PgCluster;
use streamspace_testkit::harness::wait_for_agent_online;

use crate::procs::{self, Replica};
use crate::report::{Row, Stat, percentile};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the API is asked whether a session is running yet: the timing's resolution.
const POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub runs: usize,
    pub sessions: usize,
}

async fn wait_state(api: &Client, id: uuid::Uuid, want: SessionState) -> anyhow::Result<()> {
    api.wait_for_session(id, want, Instant::now() + START_TIMEOUT)
        .await?;
    Ok(())
}

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0 || p.sessions == 0 {
        bail!("runs and sessions must be positive");
    }
    let pg = PgCluster::start()?;
    let db = pg.create_database()?;
    let replica = Replica::start(bin, "bench-0", &db, &[]).await?;
    let api = replica.api()?.with_poll_interval(POLL);
    let key = api.create_agent_key("bench-process").await?.secret;
    // The agent and everything it starts (Xvnc, xterm) are killed with the harness.
    let mut h = procs::harness(bin)?;
    let state_dir = h.path("agent-state");
    let max_sessions = p.sessions.to_string();
    let agent = h.agent_with(
        &replica.url,
        "bench-process",
        &key,
        &state_dir,
        &["--max-sessions", &max_sessions],
    )?;
    let agent_log = || agent.logs();
    wait_for_agent_online(&api, "bench-process")
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
