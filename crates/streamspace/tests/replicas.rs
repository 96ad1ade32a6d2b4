//! End-to-end: several `streamspace server` replicas on one PostgreSQL and one Redis, with real
//! `streamspace agent` processes answering `ping` commands.
//!
//! What an operator relies on when running replicas behind a load balancer: a command created on
//! any replica reaches the agent wherever it is connected; killing a replica, Redis, or the
//! Redis master loses no command and runs none twice (checked against the agent's own log of
//! executed command ids); a flapping agent ends with exactly one owner.

mod common;
#[path = "replicas/secured.rs"]
mod secured;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, bail};
use common::{ADMIN_TOKEN, Harness, Proc, wait_for_agent_online, wait_for_ready};
use streamspace_client::Client;
use streamspace_proto::api::{CommandFilter, CommandStatus};
use streamspace_testkit::harness::Signal;
use streamspace_testkit::redis::{RedisSentinel, RedisServer};
use streamspace_testkit::{PgCluster, free_port, wait_until};
use uuid::Uuid;

const AGENT: &str = "replica-agent";

/// Three replicas (A, B, C) on one database and one Redis URL, each on a fixed port so it can
/// be restarted at the same address.
struct Cluster {
    h: Harness,
    db: String,
    redis_url: String,
    names: Vec<String>,
    ports: Vec<u16>,
    procs: Vec<Option<Proc>>,
    apis: Vec<Client>,
    heartbeat: String,
    /// More `server` arguments for every replica.
    extra: Vec<String>,
}

impl Cluster {
    async fn start(pg: &PgCluster, redis_url: &str, heartbeat: u32) -> anyhow::Result<Self> {
        Self::start_with(pg.create_database()?, redis_url, heartbeat, &[]).await
    }

    /// Replicas on database `db`, each also given `extra` arguments.
    async fn start_with(
        db: String,
        redis_url: &str,
        heartbeat: u32,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cluster = Self {
            h: common::harness()?,
            db,
            redis_url: redis_url.to_owned(),
            names: vec!["A".into(), "B".into(), "C".into()],
            ports: vec![free_port()?, free_port()?, free_port()?],
            procs: vec![None, None, None],
            apis: Vec::new(),
            heartbeat: heartbeat.to_string(),
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        for i in 0..3 {
            cluster.start_replica(i).await?;
            let api = Client::new(&cluster.url(i), ADMIN_TOKEN)?;
            cluster.apis.push(api);
        }
        Ok(cluster)
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    async fn start_replica(&mut self, i: usize) -> anyhow::Result<()> {
        let listen = format!("127.0.0.1:{}", self.ports[i]);
        let name = self.names[i].clone();
        let mut args = vec![
            "--redis-url",
            &self.redis_url,
            "--heartbeat-interval",
            &self.heartbeat,
            "--ack-timeout",
            "1",
            "--max-attempts",
            "10",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let db = self.db.clone();
        let (proc, _) = self.h.replica(&db, &name, &listen, &args).await?;
        self.procs[i] = Some(proc);
        let api = Client::new(&self.url(i), ADMIN_TOKEN)?;
        wait_for_ready(&api).await.with_context(|| self.logs())?;
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut proc) = self.procs[i].take() {
            proc.kill();
        }
    }

    async fn terminate(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut proc) = self.procs[i].take() {
            proc.terminate().await.with_context(|| proc.logs())?;
        }
        Ok(())
    }

    /// An agent that knows every replica, trying them in `order`.
    fn agent(&mut self, key: &str, order: &[usize]) -> anyhow::Result<Proc> {
        let servers: Vec<String> = order.iter().map(|&i| self.url(i)).collect();
        let state = self.h.path("agent-state");
        self.h.agent(&servers.join(","), AGENT, key, &state)
    }

    fn logs(&self) -> String {
        self.procs
            .iter()
            .flatten()
            .map(Proc::logs)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Ids of the commands the agent executed, from its persisted command log.
    fn executed(&self) -> anyhow::Result<Vec<Uuid>> {
        let path = self.h.path("agent-state").join("commands.jsonl");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut ids = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("a line of {}: {line}", path.display()))?;
            let id = entry["command_id"]
                .as_str()
                .context("a command log line without command_id")?;
            ids.push(id.parse()?);
        }
        Ok(ids)
    }
}

/// The replica the agent is registered with, per the database.
async fn owner(api: &Client) -> Option<String> {
    let agent = api.get_agent(AGENT).await.ok()?;
    (agent.status == streamspace_proto::api::AgentStatus::Online)
        .then_some(agent.replica_id)
        .flatten()
}

/// Waits until the agent is online on a replica for which `accept` holds; returns its name.
async fn wait_for_owner(api: &Client, accept: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let accept = &accept;
    wait_until(
        "the agent's owner",
        Duration::from_secs(40),
        || async move { owner(api).await.filter(|o| accept(o)) },
    )
    .await
}

/// Waits until every command in `ids` is terminal; returns their statuses.
async fn wait_terminal(
    api: &Client,
    ids: &HashSet<Uuid>,
    timeout: Duration,
) -> anyhow::Result<HashMap<Uuid, CommandStatus>> {
    let result = wait_until("every command to be terminal", timeout, || async move {
        let mut seen = HashMap::new();
        for status in [CommandStatus::Completed, CommandStatus::Failed] {
            let page = api
                .list_commands(&CommandFilter {
                    agent_id: Some(AGENT.into()),
                    status: Some(status),
                    limit: Some(1000),
                    ..Default::default()
                })
                .await
                .ok()?;
            if page.len() >= 1000 && ids.len() > 1000 {
                return None;
            }
            for c in page {
                if ids.contains(&c.command_id) {
                    seen.insert(c.command_id, c.status);
                }
            }
        }
        (seen.len() == ids.len()).then_some(seen)
    })
    .await;
    match result {
        Ok(seen) => Ok(seen),
        Err(e) => {
            let mut open = Vec::new();
            for id in ids.iter().take(2000) {
                if let Ok(c) = api.get_command(*id).await
                    && !c.status.is_terminal()
                {
                    open.push((c.command_id, c.status, c.attempts));
                }
            }
            Err(e).context(format!(
                "still open: {} e.g. {:?}",
                open.len(),
                open.first()
            ))
        }
    }
}

/// Every command completed, and the agent executed each exactly once.
fn assert_exactly_once(
    cluster: &Cluster,
    ids: &HashSet<Uuid>,
    statuses: &HashMap<Uuid, CommandStatus>,
    agent_logs: &str,
) -> anyhow::Result<()> {
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| **s != CommandStatus::Completed)
        .collect();
    if let Some((id, _)) = failed.first() {
        let id = id.to_string();
        let history: Vec<String> = cluster
            .logs()
            .lines()
            .chain(agent_logs.lines())
            .filter(|l| l.contains(&id))
            .map(str::to_owned)
            .collect();
        bail!(
            "{} commands did not complete, e.g. {id}:\n{}",
            failed.len(),
            history.join("\n")
        );
    }
    let executed = cluster.executed()?;
    let unique: HashSet<Uuid> = executed.iter().copied().collect();
    if unique.len() != executed.len() {
        bail!(
            "the agent executed {} commands more than once",
            executed.len() - unique.len()
        );
    }
    let missing = ids.difference(&unique).count();
    if missing > 0 {
        bail!("{missing} completed commands are not in the agent's log");
    }
    Ok(())
}

/// Creates `n` pings, spread over `apis` (retrying any that fail), at most `parallel` at a
/// time; returns their ids.
async fn ping_many(apis: &[Client], n: usize, parallel: usize) -> anyhow::Result<HashSet<Uuid>> {
    let mut ids = HashSet::new();
    let mut next = 0usize;
    while ids.len() < n {
        let batch = parallel.min(n - ids.len());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let api = apis[next % apis.len()].clone();
            next += 1;
            set.spawn(async move { api.ping_agent(AGENT).await });
        }
        while let Some(done) = set.join_next().await {
            if let Ok(Ok(command)) = done {
                ids.insert(command.command_id);
            }
        }
        if next > n * 4 {
            bail!("creating pings keeps failing");
        }
    }
    Ok(ids)
}

async fn metric(api_url: &str, name: &str) -> f64 {
    let Ok(body) = reqwest_text(&format!("{api_url}/metrics")).await else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn reqwest_text(url: &str) -> anyhow::Result<String> {
    Ok(reqwest::get(url).await?.text().await?)
}

async fn setup(
    pg: &PgCluster,
    redis_url: &str,
    order: &[usize],
) -> anyhow::Result<(Cluster, Proc)> {
    setup_with(pg, redis_url, order, 1).await
}

async fn setup_with(
    pg: &PgCluster,
    redis_url: &str,
    order: &[usize],
    heartbeat: u32,
) -> anyhow::Result<(Cluster, Proc)> {
    with_agent(Cluster::start(pg, redis_url, heartbeat).await?, order).await
}

/// `cluster` with the agent connected, trying the replicas in `order`.
async fn with_agent(mut cluster: Cluster, order: &[usize]) -> anyhow::Result<(Cluster, Proc)> {
    let key = cluster.apis[0].create_agent_key(AGENT).await?;
    let agent = cluster.agent(&key.secret, order)?;
    wait_for_agent_online(&cluster.apis[0], AGENT)
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    Ok((cluster, agent))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_created_on_one_replica_reaches_an_agent_on_another() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let (cluster, agent) = setup(&pg, &redis.url(), &[0]).await?;
    let logs = || format!("{}\n{}", cluster.logs(), agent.logs());
    wait_for_owner(&cluster.apis[1], |o| o == "A")
        .await
        .with_context(logs)?;

    let ping = cluster.apis[1].ping_agent(AGENT).await?;
    let ids = HashSet::from([ping.command_id]);
    wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(20))
        .await
        .with_context(logs)?;
    let seen: Vec<_> = futures_all(&cluster.apis, ping.command_id).await?;
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "replicas disagree: {seen:?}"
    );
    assert_eq!(seen[0].status, CommandStatus::Completed);
    assert_eq!(seen[0].result, Some(serde_json::json!({ "pong": true })));
    assert!(
        metric(
            &cluster.url(1),
            "streamspace_deliveries_total{path=\"routed\"}"
        )
        .await
            >= 1.0,
        "B woke A through Redis"
    );

    // Created and awaited on C: A records the pong and announces it through Redis, and C's
    // waiting request is answered by that announcement (not by re-reading the database).
    let announced = "streamspace_command_waits_total{answer=\"announced\"}";
    let before = metric(&cluster.url(2), announced).await;
    let pong = cluster.apis[2]
        .ping_agent_and_wait(AGENT, Duration::from_secs(20))
        .await?;
    assert_eq!(pong.status, CommandStatus::Completed, "{pong:?}");
    assert_eq!(pong.result, Some(serde_json::json!({ "pong": true })));
    assert_eq!(pong, cluster.apis[1].get_command(pong.command_id).await?);
    assert_eq!(
        metric(&cluster.url(2), announced).await,
        before + 1.0,
        "C heard of the pong from A\n{}",
        logs()
    );

    // Every replica lists all three, with the agent held by A (records refresh every interval).
    let want = HashMap::from([
        ("A".to_owned(), 1),
        ("B".to_owned(), 0),
        ("C".to_owned(), 0),
    ]);
    for api in &cluster.apis {
        let want = &want;
        wait_until("the replica list", Duration::from_secs(10), || async move {
            let replicas = api.list_replicas().await.ok()?;
            let held: HashMap<String, u64> = replicas
                .iter()
                .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r["agents"].as_u64()?)))
                .collect();
            (&held == want).then_some(())
        })
        .await?;
    }
    let ready = cluster.apis[0].readyz().await?;
    assert_eq!(ready.redis.as_deref(), Some("ok"));
    let a = cluster.url(0);
    assert_eq!(metric(&a, "streamspace_agents_connected").await, 1.0);
    assert_eq!(metric(&a, "streamspace_redis_up").await, 1.0);
    let completed = metric(&a, "streamspace_commands_total{status=\"completed\"}").await;
    assert!(completed >= 1.0);
    // Every command seen to finish also has its duration, in buckets a dashboard can aggregate.
    assert!(metric(&a, "streamspace_command_duration_seconds_count").await >= completed);
    assert!(metric(&a, "streamspace_command_duration_seconds_bucket").await >= completed);
    Ok(())
}

async fn futures_all(
    apis: &[Client],
    id: Uuid,
) -> anyhow::Result<Vec<streamspace_proto::api::Command>> {
    let mut out = Vec::new();
    for api in apis {
        out.push(api.get_command(id).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_owning_replica_loses_and_repeats_no_command() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    // A long heartbeat keeps A from dropping the frozen agent for silence (15 s).
    let (mut cluster, agent) = setup_with(&pg, &redis.url(), &[0, 1, 2], 5).await?;
    wait_for_owner(&cluster.apis[1], |o| o == "A").await?;

    // Freeze the agent so the first 400 are surely in flight (claimed and sent by A, not
    // answered) when A dies; the rest are created while the agent moves.
    let others = vec![cluster.apis[1].clone(), cluster.apis[2].clone()];
    agent.signal(Signal::SIGSTOP)?;
    let mut ids = ping_many(&others, 400, 16).await?;
    let pending = |status| CommandFilter {
        agent_id: Some(AGENT.into()),
        status: Some(status),
        limit: Some(1000),
        ..Default::default()
    };
    let api = &cluster.apis[1];
    wait_until(
        "A to send the first 400",
        Duration::from_secs(40),
        || async {
            let left = api
                .list_commands(&pending(CommandStatus::Pending))
                .await
                .ok()?;
            left.is_empty().then_some(())
        },
    )
    .await?;
    let sent = api.list_commands(&pending(CommandStatus::Sent)).await?;
    cluster.kill(0);
    agent.signal(Signal::SIGCONT)?;
    ids.extend(ping_many(&others, 600, 16).await?);
    assert_eq!(ids.len(), 1000);

    let statuses = wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(120))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    wait_for_owner(&cluster.apis[1], |o| o != "A").await?;
    assert_eq!(
        sent.len(),
        400,
        "every first command was in flight when A died"
    );
    assert_exactly_once(&cluster, &ids, &statuses, &agent.logs())
}

/// The agent's owner record in Redis, e.g. `"3:A"`.
fn owner_record(redis_port: u16) -> String {
    let key = format!("streamspace:agent:{AGENT}:owner");
    streamspace_testkit::redis::command(redis_port, &["GET", &key]).unwrap_or_default()
}

async fn wait_for_redis_state(api: &Client, want: &str) -> anyhow::Result<()> {
    wait_until(
        &format!("readyz to report redis {want}"),
        Duration::from_secs(30),
        || async move {
            let ready = api.readyz().await.ok()?;
            (ready.ready && ready.redis.as_deref() == Some(want)).then_some(())
        },
    )
    .await
}

/// Creates a ping through `api` and waits until `routed` on that replica has grown, i.e. the
/// wake-up reached the owner through Redis.
async fn routed_ping(cluster: &Cluster, i: usize) -> anyhow::Result<Uuid> {
    let url = cluster.url(i);
    let before = metric(&url, "streamspace_deliveries_total{path=\"routed\"}").await;
    let url = &url;
    wait_until(
        "a ping routed through Redis",
        Duration::from_secs(30),
        || async move {
            let ping = cluster.apis[i].ping_agent(AGENT).await.ok()?;
            let after = metric(url, "streamspace_deliveries_total{path=\"routed\"}").await;
            (after > before).then_some(ping.command_id)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_outage_loses_nothing_and_routing_resumes() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut redis = RedisServer::start()?;
    let (cluster, agent) = setup(&pg, &redis.url(), &[0]).await?;
    wait_for_owner(&cluster.apis[1], |o| o == "A").await?;
    let others = vec![cluster.apis[1].clone(), cluster.apis[2].clone()];
    let mut ids = ping_many(&others, 100, 8).await?;

    redis.kill();
    wait_for_redis_state(&cluster.apis[1], "degraded").await?;
    // Without Redis, A's sweep still delivers what B and C write to the database.
    ids.extend(ping_many(&others, 200, 8).await?);
    wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(60))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;

    redis.restart()?;
    for api in &cluster.apis {
        wait_for_redis_state(api, "ok").await?;
    }
    let port = redis.port();
    wait_until(
        "A to re-publish its owner record",
        Duration::from_secs(20),
        || async move { owner_record(port).ends_with(":A\r\n").then_some(()) },
    )
    .await?;
    ids.insert(routed_ping(&cluster, 1).await?);
    ids.extend(ping_many(&others, 100, 8).await?);
    let statuses = wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(60))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    assert_exactly_once(&cluster, &ids, &statuses, &agent.logs())
}

/// Redis that hangs (stopped, not killed: its connections stay open and nothing answers) must
/// stall no request: Redis operations time out, the replicas report `degraded`, the API keeps
/// answering, A's sweep delivers what the others write, and after Redis continues routing
/// resumes with nothing lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_redis_stalls_no_request_and_loses_nothing() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let (cluster, agent) = setup(&pg, &redis.url(), &[0]).await?;
    wait_for_owner(&cluster.apis[1], |o| o == "A").await?;
    let others = vec![cluster.apis[1].clone(), cluster.apis[2].clone()];
    let mut ids = ping_many(&others, 50, 8).await?;

    redis.freeze()?;
    for api in &cluster.apis {
        wait_for_redis_state(api, "degraded").await?;
    }
    // Every replica answers reads and writes while Redis says nothing.
    for api in &cluster.apis {
        api.list_agents()
            .await
            .context("listing agents with Redis hung")?;
    }
    ids.extend(ping_many(&others, 100, 8).await?);
    wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(60))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;

    redis.resume()?;
    for api in &cluster.apis {
        wait_for_redis_state(api, "ok").await?;
    }
    ids.insert(routed_ping(&cluster, 1).await?);
    ids.extend(ping_many(&others, 50, 8).await?);
    let statuses = wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(60))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    assert_exactly_once(&cluster, &ids, &statuses, &agent.logs())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flapping_agent_ends_with_one_owner_by_epoch() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let (mut cluster, first) = setup(&pg, &redis.url(), &[0]).await?;
    wait_for_owner(&cluster.apis[1], |o| o == "A").await?;
    // The first connection goes silent but stays open on A; the agent shows up on C.
    first.signal(Signal::SIGSTOP)?;
    let key = cluster.apis[0].create_agent_key(AGENT).await?;
    let second = cluster.agent(&key.secret, &[2])?;
    let logs = || format!("{}\n{}", cluster.logs(), second.logs());
    wait_for_owner(&cluster.apis[1], |o| o == "C")
        .await
        .with_context(logs)?;
    let port = redis.port();
    let epoch = cluster.apis[1].get_agent(AGENT).await?.epoch;
    let want = format!("{epoch}:C\r\n");
    let want = &want;
    wait_until("C's owner record", Duration::from_secs(10), || async move {
        owner_record(port).ends_with(want.as_str()).then_some(())
    })
    .await?;

    // Commands flow to C through every replica, while and after A drops its stale connection.
    let mut ids = HashSet::new();
    ids.insert(routed_ping(&cluster, 1).await?);
    ids.extend(ping_many(&cluster.apis, 150, 8).await?);
    wait_until(
        "A to drop the silent connection",
        Duration::from_secs(20),
        || async {
            let replicas = cluster.apis[0].list_replicas().await.ok()?;
            let a = replicas.iter().find(|r| r["id"] == "A")?.clone();
            (a["agents"] == 0).then_some(())
        },
    )
    .await?;
    assert!(
        owner_record(port).ends_with(want.as_str()),
        "A's cleanup left C's record alone: {}",
        owner_record(port)
    );
    ids.extend(ping_many(&cluster.apis, 150, 8).await?);
    let statuses = wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(60))
        .await
        .with_context(logs)?;
    drop(first);
    assert_exactly_once(&cluster, &ids, &statuses, &second.logs())?;
    cluster.kill(0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_nothing() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let (mut cluster, agent) = setup(&pg, &redis.url(), &[0, 1, 2]).await?;
    let apis = cluster.apis.clone();
    let load = tokio::spawn(async move { ping_many(&apis, 900, 4).await });
    for i in 0..3 {
        cluster.terminate(i).await?;
        // The agent moves within seconds; then the replica comes back.
        wait_for_owner(&cluster.apis[(i + 1) % 3], |o| o != cluster.names[i])
            .await
            .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
        cluster.start_replica(i).await?;
    }
    let ids = load.await??;
    let statuses = wait_terminal(&cluster.apis[0], &ids, Duration::from_secs(90))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    assert_exactly_once(&cluster, &ids, &statuses, &agent.logs())
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_follows_a_sentinel_failover() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut master = RedisServer::start()?;
    let master_port = master.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port])?;
    let sentinel = RedisSentinel::start("streamspace", master.port())?;
    let url = format!("redis+sentinel://127.0.0.1:{}/streamspace", sentinel.port());
    let (cluster, agent) = setup(&pg, &url, &[0]).await?;
    wait_for_owner(&cluster.apis[1], |o| o == "A").await?;
    let mut ids = HashSet::new();
    ids.insert(routed_ping(&cluster, 1).await?);
    let others = vec![cluster.apis[1].clone(), cluster.apis[2].clone()];
    ids.extend(ping_many(&others, 100, 8).await?);

    wait_until(
        "the sentinel to know the replica",
        Duration::from_secs(30),
        || async {
            sentinel
                .ready_for_failover("streamspace", 0)
                .ok()?
                .then_some(())
        },
    )
    .await?;
    master.kill();
    let (sentinel_ref, replica_port) = (&sentinel, replica.port());
    wait_until("the sentinel to promote the replica", Duration::from_secs(60), || async move {
        (sentinel_ref.master_port("streamspace").ok()? == replica_port).then_some(())
    })
    .await?;
    ids.extend(ping_many(&others, 100, 8).await?);
    for api in &cluster.apis {
        wait_for_redis_state(api, "ok").await?;
    }
    wait_until(
        "A's owner record on the new master",
        Duration::from_secs(20),
        || async move { owner_record(replica_port).ends_with(":A\r\n").then_some(()) },
    )
    .await?;
    ids.insert(routed_ping(&cluster, 2).await?);
    let statuses = wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(60))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    assert_exactly_once(&cluster, &ids, &statuses, &agent.logs())
}

/// Three Sentinels with quorum 2, the first in the URL down from the start: the replicas ask
/// the next one. The master dies, the other two fail it over; then the old master comes back
/// as a stale master (empty, still saying it is a master) until the Sentinels demote it.
/// Routing follows the new master throughout and no command is lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn routing_survives_a_dead_sentinel_and_a_stale_master() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut master = RedisServer::start()?;
    let master_port = master.port();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port.to_string()])?;
    let dead = free_port()?;
    let s2 = RedisSentinel::start_with_quorum("streamspace", master_port, 2)?;
    let s3 = RedisSentinel::start_with_quorum("streamspace", master_port, 2)?;
    let url = format!(
        "redis+sentinel://127.0.0.1:{dead},127.0.0.1:{},127.0.0.1:{}/streamspace",
        s2.port(),
        s3.port()
    );
    let (cluster, agent) = setup(&pg, &url, &[0]).await?;
    wait_for_owner(&cluster.apis[1], |o| o == "A").await?;
    let mut ids = HashSet::new();
    ids.insert(routed_ping(&cluster, 1).await?);
    let others = vec![cluster.apis[1].clone(), cluster.apis[2].clone()];
    ids.extend(ping_many(&others, 100, 8).await?);

    for s in [&s2, &s3] {
        wait_until(
            "each live sentinel to know the replica and the other sentinel",
            Duration::from_secs(30),
            || async move { s.ready_for_failover("streamspace", 1).ok()?.then_some(()) },
        )
        .await?;
    }
    master.kill();
    let replica_port = replica.port();
    for s in [&s2, &s3] {
        wait_until(
            "both live sentinels to agree on the new master",
            Duration::from_secs(60),
            || async move { (s.master_port("streamspace").ok()? == replica_port).then_some(()) },
        )
        .await?;
    }
    ids.extend(ping_many(&others, 100, 8).await?);
    // The old master restarts empty and calls itself master until a Sentinel demotes it.
    master.restart()?;
    ids.extend(ping_many(&others, 100, 8).await?);
    wait_until(
        "the sentinels to demote the stale master",
        Duration::from_secs(60),
        || async move {
            let role = streamspace_testkit::redis::command(master_port, &["ROLE"]).ok()?;
            role.contains("slave").then_some(())
        },
    )
    .await?;
    for api in &cluster.apis {
        wait_for_redis_state(api, "ok").await?;
    }
    wait_until(
        "A's owner record on the new master",
        Duration::from_secs(20),
        || async move { owner_record(replica_port).ends_with(":A\r\n").then_some(()) },
    )
    .await?;
    ids.insert(routed_ping(&cluster, 2).await?);
    let statuses = wait_terminal(&cluster.apis[1], &ids, Duration::from_secs(60))
        .await
        .with_context(|| format!("{}\n{}", cluster.logs(), agent.logs()))?;
    assert_exactly_once(&cluster, &ids, &statuses, &agent.logs())
}

/// A user disabled (or a token revoked) on one replica stops working on the others at once:
/// the replicas trust cached credentials for an hour here, so only the announcement over Redis
/// can make the other replica refuse them.
#[tokio::test(flavor = "multi_thread")]
async fn revocations_reach_every_replica_through_redis() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut h = common::harness()?;
    let db = pg.create_database()?;
    let redis_url = redis.url();
    let args = [
        "--redis-url",
        redis_url.as_str(),
        "--credential-cache-ttl",
        "1h",
    ];
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let (a_proc, a_url) = h.replica(&db, "A", &listen(free_port()?), &args).await?;
    let (b_proc, b_url) = h.replica(&db, "B", &listen(free_port()?), &args).await?;
    let (admin_a, admin_b) = (
        Client::new(&a_url, ADMIN_TOKEN)?,
        Client::new(&b_url, ADMIN_TOKEN)?,
    );
    wait_for_ready(&admin_a).await?;
    wait_for_ready(&admin_b).await?;
    let logs = || format!("{}\n{}", a_proc.logs(), b_proc.logs());
    let create = streamspace_proto::api::CreateUser {
        username: "alice".into(),
        password: Some("alice-password-1".into()),
        ..Default::default()
    };
    admin_a.create_user(&create).await?;
    let login = streamspace_proto::api::LoginRequest {
        username: "alice".into(),
        password: "alice-password-1".into(),
        token_name: Some("t".into()),
        ..Default::default()
    };
    let token = admin_a.login(&login).await?.token.context("a token")?.token;
    let (alice_a, alice_b) = (Client::new(&a_url, &token)?, Client::new(&b_url, &token)?);
    // Both replicas have now resolved (and cached) alice's token.
    alice_a.me().await?;
    alice_b.me().await?;

    let disable = streamspace_proto::api::UpdateUser {
        disabled: Some(true),
        ..Default::default()
    };
    admin_a.update_user("alice", &disable).await?;
    let refused = |api: Client| async move {
        wait_until(
            "alice's token to be refused",
            Duration::from_secs(20),
            || {
                let api = api.clone();
                async move { (api.me().await.err()?.status() == Some(401)).then_some(()) }
            },
        )
        .await
    };
    refused(alice_a.clone()).await.with_context(logs)?;
    refused(alice_b.clone())
        .await
        .context("replica B kept trusting a disabled user's token")
        .with_context(logs)?;

    // Enabled again, then the token itself revoked on B: refused on A.
    let enable = streamspace_proto::api::UpdateUser {
        disabled: Some(false),
        ..Default::default()
    };
    admin_b.update_user("alice", &enable).await?;
    alice_a.me().await.context("enabled again")?;
    let id = alice_b
        .list_tokens(None)
        .await?
        .first()
        .context("a token")?
        .id;
    admin_b.revoke_token(id).await?;
    refused(alice_a)
        .await
        .context("replica A kept trusting a revoked token")
        .with_context(logs)?;
    Ok(())
}

/// Waits until `agent`'s output says the server closed its connection with `reason`; fails if
/// it was closed for another reason first.
async fn wait_for_close(agent: &Proc, reason: &str) -> anyhow::Result<()> {
    wait_until(
        &format!("the agent to be closed with {reason:?}"),
        Duration::from_secs(60),
        || {
            let logs = agent.logs();
            async move {
                logs.lines()
                    .find(|l| l.contains("the server closed the connection"))
                    .map(str::to_owned)
            }
        },
    )
    .await
    .and_then(|line| {
        if line.contains(reason) {
            Ok(())
        } else {
            bail!("closed for another reason: {line}")
        }
    })
}

/// Revoking an agent's key on one replica, or deleting the agent on another, disconnects it
/// from the replica holding it, at once: the revoking replica announces it over Redis. The
/// heartbeat's re-check of the key (the fallback when an announcement is lost) would close it
/// with another reason, and heartbeats are 30 s apart here, so the reason shows which did it.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_key_or_deleted_agent_is_disconnected_wherever_it_is() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let (mut cluster, agent) = setup_with(&pg, &redis.url(), &[0], 30).await?;
    let logs = |cluster: &Cluster, agent: &Proc| format!("{}\n{}", cluster.logs(), agent.logs());
    wait_for_owner(&cluster.apis[1], |o| o == "A")
        .await
        .with_context(|| logs(&cluster, &agent))?;
    let key = cluster.apis[2]
        .list_agent_keys()
        .await?
        .into_iter()
        .find(|k| k.agent_id == AGENT)
        .context("the agent's key")?;
    cluster.apis[2].revoke_agent_key(key.id).await?;
    wait_for_close(&agent, "agent key revoked")
        .await
        .with_context(|| logs(&cluster, &agent))?;

    let doomed = "doomed-agent";
    let key = cluster.apis[0].create_agent_key(doomed).await?;
    let servers = cluster.url(0);
    let state = cluster.h.path("doomed-state");
    let second = cluster.h.agent(&servers, doomed, &key.secret, &state)?;
    wait_for_agent_online(&cluster.apis[1], doomed)
        .await
        .with_context(|| logs(&cluster, &second))?;
    cluster.apis[1].delete_agent(doomed).await?;
    wait_for_close(&second, "agent deleted")
        .await
        .with_context(|| logs(&cluster, &second))?;
    Ok(())
}

/// Without Redis, replicas sharing a database cannot tell each other: the replica holding the
/// agent finds the key revoked at the agent's next heartbeat and closes the connection.
#[tokio::test(flavor = "multi_thread")]
async fn without_redis_a_revoked_key_is_found_on_the_next_heartbeat() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut h = common::harness()?;
    let db = pg.create_database()?;
    let args = ["--heartbeat-interval", "1"];
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let (a_proc, a_url) = h.replica(&db, "A", &listen(free_port()?), &args).await?;
    let (b_proc, b_url) = h.replica(&db, "B", &listen(free_port()?), &args).await?;
    let (admin_a, admin_b) = (
        Client::new(&a_url, ADMIN_TOKEN)?,
        Client::new(&b_url, ADMIN_TOKEN)?,
    );
    wait_for_ready(&admin_a).await?;
    wait_for_ready(&admin_b).await?;
    let key = admin_b.create_agent_key(AGENT).await?;
    let state = h.path("agent-state");
    let agent = h.agent(&a_url, AGENT, &key.secret, &state)?;
    let logs = || format!("{}\n{}\n{}", a_proc.logs(), b_proc.logs(), agent.logs());
    wait_for_agent_online(&admin_b, AGENT)
        .await
        .with_context(logs)?;
    admin_b.revoke_agent_key(key.key.id).await?;
    wait_for_close(&agent, "checked on heartbeat")
        .await
        .with_context(logs)?;
    Ok(())
}
