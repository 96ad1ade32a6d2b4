//! The `agents` scenario's failover measurement: N agents on the first of three replicas (shared
//! PostgreSQL and Redis), that replica SIGKILLed, and the time until every agent is registered
//! again on a survivor.
//!
//! The simulated agents move as the real one does: after every ended connection or failed
//! attempt they ask the agent's own rule ([`Reconnects`], which its supervisor runs, with its
//! default settings) where to go next and how long to wait — another server at random, a full
//! jitter exponential backoff, failures forgotten after a connection that stayed up. Each agent records when it was welcomed; that
//! gives the per-agent times. "All back" is not taken from those records: it is the moment the
//! API of a surviving replica (the agents table in PostgreSQL) first lists every agent online on
//! a survivor at a newer epoch than before the kill. The Redis owner records are checked too.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use streamspace_agent::AgentConfig;
use streamspace_agent::backoff::Reconnects;
use streamspace_client::Client;
use streamspace_proto::api::{Agent, AgentStatus};
use streamspace_testkit::PgCluster;
use streamspace_testkit::redis::RedisServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent;
use crate::procs::Replica;

/// Replicas started; the agents start on the first, which is then killed.
pub const REPLICAS: usize = 3;
/// How often the API is asked whether every agent is back.
pub const POLL: Duration = Duration::from_millis(250);

/// One failover's results.
#[derive(Debug)]
pub struct Measured {
    /// Kill → welcome on a survivor, per agent, in milliseconds (ascending).
    pub per_agent_ms: Vec<f64>,
    /// Kill → the agent noticing its connection had ended, per agent, in ms (ascending).
    pub noticed_ms: Vec<f64>,
    /// Kill → the API first lists every agent online on a survivor at a new epoch, in seconds.
    pub all_back_secs: f64,
    /// CPU seconds each survivor used from the kill until all agents were back.
    pub survivor_cpu_secs: BTreeMap<String, f64>,
    /// Agents per surviving replica, from the agents table.
    pub spread: BTreeMap<String, usize>,
    /// Connections lost and attempts failed after the kill, by cause.
    pub failures: BTreeMap<String, usize>,
    /// Warning and error lines the surviving replicas logged.
    pub replica_warnings: Vec<String>,
}

/// The real agent's default settings, which the simulated agents reconnect with.
fn agent_defaults() -> AgentConfig {
    AgentConfig::new(vec![], "bench", "bench", "/nonexistent")
}

/// The real agent's default backoff bounds, as the report describes them: (first ceiling, cap).
pub fn backoff_bounds() -> (Duration, Duration) {
    let defaults = agent_defaults();
    (defaults.backoff_min, defaults.backoff_max)
}

/// What the agents record while they roam, shared with the measurement.
#[derive(Default)]
struct Log {
    /// Per agent: every welcome, as (when, index of the server).
    welcomes: Mutex<Vec<Vec<(Instant, usize)>>>,
    /// Per agent: when its connections ended (not counting the stop at the end).
    losses: Mutex<Vec<Vec<Instant>>>,
    /// Lost connections and failed attempts, by cause.
    failures: Mutex<BTreeMap<String, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One simulated agent's identity and the servers it knows, in the order it tries them.
struct Roamer {
    index: usize,
    agent_id: String,
    key: String,
    urls: Arc<Vec<String>>,
    heartbeat: Duration,
    log: Arc<Log>,
}

impl Roamer {
    fn spec(&self, server: usize) -> agent::Spec {
        agent::Spec {
            ws_url: self.urls[server].clone(),
            key: self.key.clone(),
            agent_id: self.agent_id.clone(),
            heartbeat: self.heartbeat,
            targets: Default::default(),
            max_sessions: agent::MAX_SESSIONS,
            tls: None,
        }
    }

    fn welcomed(&self, server: usize) {
        lock(&self.log.welcomes)[self.index].push((Instant::now(), server));
    }

    /// Counts a lost connection or a failed attempt by its cause.
    fn failed(&self, what: &str, err: &anyhow::Error) {
        let own = format!("agent {}: ", self.agent_id);
        let cause = err.root_cause().to_string().replace(&own, "");
        *lock(&self.log.failures)
            .entry(format!("{what}: {cause}"))
            .or_default() += 1;
    }

    /// Registers with the first server (failing if it cannot: the run needs every agent there),
    /// then keeps the agent connected, moving on after every lost connection.
    async fn start(
        self,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
        let first = agent::spawn(self.spec(0), stop.clone()).await?;
        self.welcomed(0);
        Ok(tokio::spawn(self.roam(first, stop)))
    }

    async fn roam(
        self,
        mut connected: JoinHandle<anyhow::Result<u64>>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let defaults = agent_defaults();
        // Connect and welcome together (the real agent bounds each separately).
        let attempt_timeout = defaults.connect_timeout + defaults.welcome_timeout;
        let mut reconnects = Reconnects::new(self.urls.len(), &defaults);
        let mut since = Instant::now();
        loop {
            let ended = connected.await.context("a simulated agent panicked")?;
            if *stop.borrow() {
                return Ok(());
            }
            lock(&self.log.losses)[self.index].push(Instant::now());
            if let Err(e) = ended {
                self.failed("lost", &e);
            }
            let mut registered_for = since.elapsed();
            // Try another server after each wait until one welcomes the agent, as the real
            // agent does. The replicas here are killed, so no `shutdown` message ever comes.
            loop {
                let wait = reconnects.after(registered_for, false).unwrap_or_default();
                registered_for = Duration::ZERO;
                let server = reconnects.server();
                tokio::select! {
                    _ = stop.changed() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
                let attempt = tokio::time::timeout(
                    attempt_timeout,
                    agent::spawn(self.spec(server), stop.clone()),
                );
                match attempt.await {
                    Ok(Ok(task)) => {
                        self.welcomed(server);
                        connected = task;
                        since = Instant::now();
                        break;
                    }
                    Ok(Err(e)) => self.failed("attempt", &e),
                    Err(_) => self.failed("attempt", &anyhow::anyhow!("timed out")),
                }
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// Three fresh replicas on a fresh database and Redis, `n` agents on the first, the first
/// killed.
pub async fn one_run(
    bin: &Path,
    pg: &PgCluster,
    n: usize,
    heartbeat: Duration,
    timeout: Duration,
) -> anyhow::Result<Measured> {
    let db = pg.create_database()?;
    // A fresh Redis too: owner records left by an earlier run would name higher epochs than this
    // run's database hands out, and a claim never overwrites a higher epoch.
    let redis = RedisServer::start()?;
    let interval = heartbeat.as_secs().to_string();
    let redis_url = redis.url();
    let extra = ["--heartbeat-interval", &interval, "--redis-url", &redis_url];
    let mut replicas = Vec::with_capacity(REPLICAS);
    for i in 0..REPLICAS {
        replicas.push(Replica::start(bin, &format!("bench-{i}"), &db, &extra).await?);
    }
    let keys = crate::agents::create_keys(&replicas[0].api()?, n).await?;
    let urls = Arc::new(replicas.iter().map(Replica::agent_ws_url).collect());
    let log = Arc::new(Log {
        welcomes: Mutex::new(vec![Vec::new(); n]),
        losses: Mutex::new(vec![Vec::new(); n]),
        failures: Mutex::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    let start = Instant::now();
    for chunk in keys
        .chunks(32)
        .enumerate()
        .map(|(c, chunk)| (c * 32, chunk))
    {
        let (offset, chunk) = chunk;
        let batch = chunk.iter().enumerate().map(|(i, (id, key))| {
            Roamer {
                index: offset + i,
                agent_id: id.clone(),
                key: key.clone(),
                urls: Arc::clone(&urls),
                heartbeat,
                log: Arc::clone(&log),
            }
            .start(stop_rx.clone())
        });
        for task in futures_util::future::join_all(batch).await {
            tasks.push(task.with_context(|| replicas[0].logs())?);
        }
    }
    println!(
        "  {n} agents connected to bench-0 in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let observer = replicas[REPLICAS - 1].api()?;
    let before = epochs_on(&observer, "bench-0", n).await?;
    // Let the connections settle for one heartbeat, as in the memory measurement.
    tokio::time::sleep(heartbeat).await;
    lock(&log.failures).clear();

    let killed = Instant::now();
    drop(replicas.remove(0)); // SIGKILL, then reaped
    let survivors: Vec<String> = replicas.iter().map(|r| r.id.clone()).collect();
    let cpu_at_kill = survivors_cpu(&replicas)?;
    let logs = |replicas: &[Replica]| {
        replicas
            .iter()
            .map(|r| log_tail(&r.logs(), 40))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let all_back = all_back(&observer, &before, &survivors, killed, timeout).await;
    let (all_back_secs, agents) = match all_back {
        Ok(found) => found,
        Err(e) => {
            let welcomed = welcomed_after(&log, killed).len();
            let failures = lock(&log.failures).clone();
            return Err(e.context(format!(
                "{welcomed} of {n} agents were welcomed by a survivor; failed attempts: \
                 {failures:?}\n{}",
                logs(&replicas)
            )));
        }
    };
    let survivor_cpu_secs = survivors_cpu(&replicas)?
        .into_iter()
        .zip(cpu_at_kill)
        .map(|((id, after), (_, before))| (id, after - before))
        .collect();
    let owners = check_owner_records(&redis, &agents, &survivors).await;
    let _ = stop_tx.send(true);
    for task in tasks {
        task.await?.with_context(|| logs(&replicas))?;
    }
    owners.with_context(|| logs(&replicas))?;
    let per_agent = welcomed_after(&log, killed);
    if per_agent.len() != n {
        bail!(
            "the API lists every agent back, but only {} of {n} simulated agents saw a welcome",
            per_agent.len()
        );
    }
    let mut spread = BTreeMap::new();
    for a in &agents {
        *spread
            .entry(a.replica_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let replica_warnings = replicas
        .iter()
        .flat_map(|r| {
            r.logs()
                .lines()
                // The level may be wrapped in colour codes.
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let failures = lock(&log.failures).clone();
    Ok(Measured {
        survivor_cpu_secs,
        per_agent_ms: per_agent,
        noticed_ms: noticed_after(&log, killed),
        all_back_secs,
        spread,
        failures,
        replica_warnings,
    })
}

/// The last `lines` lines of a replica's log, saying how many were left out.
fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    let skip = all.len().saturating_sub(lines);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("({skip} earlier lines left out)\n"));
    }
    out.push_str(&all[skip..].join("\n"));
    out
}

fn survivors_cpu(replicas: &[Replica]) -> anyhow::Result<Vec<(String, f64)>> {
    replicas
        .iter()
        .map(|r| Ok((r.id.clone(), crate::agents::cpu_secs(r.pid())?)))
        .collect()
}

/// Every agent's epoch, once the API lists all `n` online on `replica`.
async fn epochs_on(api: &Client, replica: &str, n: usize) -> anyhow::Result<HashMap<String, i64>> {
    streamspace_testkit::wait_until(
        &format!("the API to list {n} agents online on {replica}"),
        Duration::from_secs(30),
        || async {
            let agents = api.list_agents().await.ok()?;
            let on = agents
                .iter()
                .filter(|a| {
                    a.status == AgentStatus::Online && a.replica_id.as_deref() == Some(replica)
                })
                .count();
            (on == n && agents.len() == n)
                .then(|| agents.into_iter().map(|a| (a.agent_id, a.epoch)).collect())
        },
    )
    .await
}

/// Polls the API until every agent in `before` is online on one of `survivors` at a newer epoch;
/// returns the seconds since `killed` at which that was first seen, and the agents as listed.
async fn all_back(
    api: &Client,
    before: &HashMap<String, i64>,
    survivors: &[String],
    killed: Instant,
    timeout: Duration,
) -> anyhow::Result<(f64, Vec<Agent>)> {
    let mut last = Vec::new();
    while killed.elapsed() < timeout {
        // A replica busy with the reconnecting agents may answer slowly or not at all; that
        // only delays the observation, it does not end the run.
        if let Ok(agents) = api.list_agents().await {
            let seen = killed.elapsed().as_secs_f64();
            if agents
                .iter()
                .filter(|a| is_back(a, before, survivors))
                .count()
                == before.len()
            {
                return Ok((seen, agents));
            }
            last = agents;
        }
        tokio::time::sleep(POLL).await;
    }
    // Say what the agents that are not back look like in the table.
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    for a in last.iter().filter(|a| !is_back(a, before, survivors)) {
        let newer = before.get(&a.agent_id).is_some_and(|&e| a.epoch > e);
        let key = format!(
            "{:?} on {:?}, {} epoch",
            a.status,
            a.replica_id,
            if newer { "newer" } else { "same" }
        );
        *states.entry(key).or_default() += 1;
    }
    bail!(
        "not every agent was back on {survivors:?} {timeout:?} after the kill; the others, as \
         the API last listed them: {states:?}"
    )
}

fn is_back(a: &Agent, before: &HashMap<String, i64>, survivors: &[String]) -> bool {
    a.status == AgentStatus::Online
        && a.replica_id.as_ref().is_some_and(|r| survivors.contains(r))
        && before.get(&a.agent_id).is_some_and(|&e| a.epoch > e)
}

/// Kill → first welcome after it, per agent that has one, in ms, ascending.
fn welcomed_after(log: &Log, killed: Instant) -> Vec<f64> {
    let firsts = lock(&log.welcomes)
        .iter()
        .filter_map(|w| w.iter().map(|(t, _)| *t).find(|t| *t > killed))
        .collect();
    since(killed, firsts)
}

/// Kill → first loss noticed after it, per agent that noticed one, in ms, ascending.
fn noticed_after(log: &Log, killed: Instant) -> Vec<f64> {
    let firsts = lock(&log.losses)
        .iter()
        .filter_map(|l| l.iter().copied().find(|t| *t > killed))
        .collect();
    since(killed, firsts)
}

fn since(start: Instant, instants: Vec<Instant>) -> Vec<f64> {
    let mut ms: Vec<f64> = instants
        .into_iter()
        .map(|t| t.duration_since(start).as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// Checks that Redis names, for every agent, the survivor and epoch the agents table does (the
/// record routing uses to reach the agent). The claim follows the registration, so this waits.
async fn check_owner_records(
    redis: &RedisServer,
    agents: &[Agent],
    survivors: &[String],
) -> anyhow::Result<()> {
    let client = redis::Client::open(redis.url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = agents
        .iter()
        .map(|a| format!("streamspace:agent:{}:owner", a.agent_id))
        .collect();
    let expected: Vec<String> = agents
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a.epoch,
                a.replica_id.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let owners: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let wrong: Vec<_> = owners
            .iter()
            .zip(&expected)
            .zip(agents)
            .filter(|((owner, want), _)| owner.as_deref() != Some(want.as_str()))
            .map(|((owner, want), a)| format!("{}: {owner:?}, expected {want}", a.agent_id))
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} of {} Redis owner records do not name the survivor ({survivors:?}) the \
                 agents table does, e.g. {:?}",
                wrong.len(),
                agents.len(),
                &wrong[..wrong.len().min(3)]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
