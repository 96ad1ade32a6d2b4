//! Scenario `session-start`: real runtimes — a `streamspace agent` process starting Xvnc and the
//! seeded `xterm` template (`process`), and one starting containers through Podman's Docker API
//! (`docker`) — timed from `POST /api/v1/sessions` to the session being `running` through the
//! API (the agent reports running once its VNC server answers). Sessions start one after
//! another; each run stops them all before the next. No reference exists for this one; issue 6
//! sets a target for the process runtime (p50 < 1 s), issue 14 for the docker runtime (p50 < 2 s
//! with a local image).

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
    pub runtimes: Vec<Runtime>,
}

async fn wait_state(api: &Client, id: uuid::Uuid, want: SessionState) -> anyhow::Result<()> {
    api.wait_for_session(id, want, Instant::now() + START_TIMEOUT)
        .await?;
    Ok(())
}

/// Which runtime the agent starts sessions with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// `--runtime process`: Xvnc and the seeded `xterm` template on this machine.
    Process,
    /// `--runtime docker` against a throwaway Podman engine's Docker API, with a session image
    /// built locally (busybox and a stand-in VNC server; see `streamspace_testkit::Podman`).
    Docker,
}

/// The image of the docker runtime's template, built into the throwaway Podman.
const DOCKER_IMAGE: &str = "localhost/streamspace-session:bench";

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0 || p.sessions == 0 || p.runtimes.is_empty() {
        bail!("runs, sessions and runtimes must be given");
    }
    let mut rows = Vec::new();
    for &runtime in &p.runtimes {
        rows.extend(measure(bin, p, runtime).await?);
    }
    let mut notes = vec![
        format!(
            "{} sessions per run, started one after another; time is `POST /api/v1/sessions` → \
             `running` seen by polling every 5 ms (the agent reports running once the session's \
             VNC server answers).",
            p.sessions
        ),
        "No same-run reference: issue 6's target is p50 < 1 s for the process runtime, issue 14's \
         p50 < 2 s for the docker runtime with a local image."
            .into(),
    ];
    if p.runtimes.contains(&Runtime::Process) {
        notes.push("process runtime: the seeded `xterm` template (Xvnc + xterm).".into());
    }
    if p.runtimes.contains(&Runtime::Docker) {
        notes.push(
            "docker runtime: `streamspace agent --runtime docker` against Podman's Docker API \
             (a throwaway `podman system service`, runc, vfs storage), creating and starting one \
             container per session from a local busybox image whose stand-in VNC server answers \
             with the RFB banner; the image is never pulled."
                .into(),
        );
    }
    Ok((rows, notes))
}

async fn measure(bin: &std::path::Path, p: &Params, runtime: Runtime) -> anyhow::Result<Vec<Row>> {
    println!("session start: {runtime:?} runtime …");
    let pg = PgCluster::start()?;
    let db = pg.create_database()?;
    let replica = Replica::start(bin, "bench-0", &db, &[]).await?;
    let api = replica.api()?.with_poll_interval(POLL);
    let agent_id = match runtime {
        Runtime::Process => "bench-process",
        Runtime::Docker => "bench-docker",
    };
    let key = api.create_agent_key(agent_id).await?.secret;
    // The agent and everything it starts (Xvnc, xterm) are killed with the harness; the
    // containers with the Podman engine.
    let mut h = procs::harness(bin)?;
    let state_dir = h.path("agent-state");
    let max_sessions = p.sessions.to_string();
    let (podman, agent, template) = match runtime {
        Runtime::Process => {
            let agent = h.agent_with(
                &replica.url,
                agent_id,
                &key,
                &state_dir,
                &["--max-sessions", &max_sessions],
            )?;
            (None, agent, "xterm")
        }
        Runtime::Docker => {
            let podman = streamspace_testkit::Podman::start()?;
            podman.import_session_image(DOCKER_IMAGE)?;
            api.create_template(&streamspace_proto::api::CreateTemplate {
                name: "busybox".into(),
                image: Some(DOCKER_IMAGE.into()),
                ..Default::default()
            })
            .await?;
            let state = state_dir.display().to_string();
            let agent = h.spawn(
                "agent-docker",
                &[
                    "agent",
                    "--server",
                    &replica.url,
                    "--agent-id",
                    agent_id,
                    "--key",
                    &key,
                    "--runtime",
                    "docker",
                    "--docker-host",
                    &podman.docker_host(),
                    "--state-dir",
                    &state,
                    "--max-sessions",
                    &max_sessions,
                ],
                &[],
            )?;
            (Some(podman), agent, "busybox")
        }
    };
    let agent_log = || agent.logs();
    wait_for_agent_online(&api, agent_id)
        .await
        .with_context(agent_log)?;

    let (mut p50, mut p99, mut per_minute) = (vec![], vec![], vec![]);
    for run in 0..p.runs {
        let mut times = Vec::new();
        let mut ids = Vec::new();
        let batch = Instant::now();
        for _ in 0..p.sessions {
            let t0 = Instant::now();
            let session = api.create_session(template).await?;
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
    drop(agent);
    drop(podman);
    let setup = match runtime {
        Runtime::Process => "1 replica, process runtime",
        Runtime::Docker => "1 replica, docker runtime (Podman)",
    };
    let row = |metric: &str, unit: &str, v: Vec<f64>| Row {
        setup: setup.into(),
        metric: metric.into(),
        unit: unit.into(),
        value: Stat::of(v),
        reference: None,
    };
    Ok(vec![
        row("start p50", "ms", p50),
        row("start p99", "ms", p99),
        row("sessions started, one at a time", "/min", per_minute),
    ])
}
