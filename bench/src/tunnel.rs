//! Scenario `tunnel`: bytes through a viewer's stream — browser-side WebSocket → server → the
//! agent's data connection (raw, or a WebSocket against a server that refuses the upgrade) →
//! TCP target — as bulk throughput (a source sending a fixed number of bytes:
//! the downstream direction a VNC stream mostly uses) and small-message round trips (an echo).
//! References in the same run, against the same targets: raw TCP over loopback, and websockify
//! (Debian's python3-websockify) in front of each target. With `--security tls` the replicas
//! serve TLS (certificates of a CA made for the run) and websockify does too (`--ssl-only`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use streamspace_client::Client;
use streamspace_client::tls::{TlsOptions, client_config};
use streamspace_proto::api::{CreateTemplate, SessionState};
use streamspace_testkit::{CertFiles, PgCluster, RedisServer, TestCa, free_port, wait_until};
use tokio::sync::watch;
use uuid::Uuid;

use crate::agent;
use crate::commands::HEARTBEAT;
use crate::pipe::{self, Path};
use crate::procs::Replica;
use crate::report::{Reference, Row, Stat, percentile};

#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub runs: usize,
    pub bulk_mb: usize,
    pub round_trips: usize,
    pub message_bytes: usize,
    /// Record every viewing (`--recording-policy always` into a local directory), to measure
    /// what recording costs the tunnel.
    pub record: bool,
    /// Plain replicas, replicas serving TLS, or both (each against websockify the same way).
    pub security: Vec<Security>,
}

/// Whether the replicas (and websockify) serve TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Plain,
    Tls,
}

/// The certificates of a TLS run: the replicas' and websockify's, and what clients trust.
struct BenchTls {
    cert: CertFiles,
    ca: TestCa,
    client: std::sync::Arc<rustls::ClientConfig>,
}

impl BenchTls {
    fn new() -> anyhow::Result<Self> {
        let ca = TestCa::new("StreamSpace bench CA")?;
        let cert = ca.server_cert("bench", &["127.0.0.1", "localhost"])?;
        let client = client_config(&TlsOptions {
            ca_cert: Some(ca.cert.clone()),
            ..TlsOptions::default()
        })?;
        Ok(Self { cert, ca, client })
    }
}

/// websockify in front of one target, killed when dropped.
struct Websockify {
    url: String,
    child: Child,
}

impl Websockify {
    /// Plain, or with `tls` serving only TLS (`wss://`).
    async fn start(target: SocketAddr, tls: Option<&BenchTls>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = Command::new("websockify");
        if let Some(tls) = tls {
            command
                .arg("--cert")
                .arg(&tls.cert.cert)
                .arg("--key")
                .arg(&tls.cert.key)
                .arg("--ssl-only");
        }
        let child = command
            .arg(format!("127.0.0.1:{port}"))
            .arg(target.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting websockify (apt-get install python3-websockify)")?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let ws = Self {
            url: format!("{scheme}://127.0.0.1:{port}/"),
            child,
        };
        wait_until(
            "websockify to listen",
            Duration::from_secs(20),
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await?;
        Ok(ws)
    }
}

impl Drop for Websockify {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn running_session(api: &Client, template: &str) -> anyhow::Result<Uuid> {
    let session = api.create_session(template).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    api.wait_for_session(session.id, SessionState::Running, deadline)
        .await?;
    Ok(session.id)
}

/// A path through `url`, over TLS verified with `tls` if given.
fn path(url: String, tls: Option<&BenchTls>) -> Path {
    match tls {
        Some(tls) => Path::Wss(url, tls.client.clone()),
        None => Path::Ws(url),
    }
}

/// A control plane holding a simulated agent with one source and one echo session; viewers
/// connect through `viewer_api`'s replica (the last one: with two, not the agent's).
struct Setup<'t> {
    name: String,
    replicas: Vec<Replica>,
    viewer_api: Client,
    source_session: Uuid,
    echo_session: Uuid,
    agent: tokio::task::JoinHandle<anyhow::Result<u64>>,
    /// Set when the replicas serve TLS.
    tls: Option<&'t BenchTls>,
}

impl<'t> Setup<'t> {
    async fn start(
        bin: &std::path::Path,
        db: &str,
        redis_url: Option<&str>,
        recordings: Option<&str>,
        targets: [SocketAddr; 2],
        stop: watch::Receiver<bool>,
        tls: Option<&'t BenchTls>,
    ) -> anyhow::Result<Self> {
        let mut extra: Vec<&str> = redis_url.map_or(vec![], |url| vec!["--redis-url", url]);
        if let Some(store) = recordings {
            extra.extend(["--recording-policy", "always", "--recording-store", store]);
        }
        let tls_args = tls.map(|t| {
            [
                t.cert.cert.display().to_string(),
                t.cert.key.display().to_string(),
                t.ca.cert.display().to_string(),
            ]
        });
        if let Some([cert, key, ca]) = &tls_args {
            extra.extend(["--tls-cert", cert, "--tls-key", key, "--ca-cert", ca]);
        }
        let count = if redis_url.is_some() { 2 } else { 1 };
        let mut replicas = Vec::new();
        for i in 0..count {
            // Setups share one Redis: replica and agent ids differ between them.
            let id = format!("bench-{}-{i}", setup_tag(count, tls.is_some()));
            let client_tls = tls.map(|t| t.client.clone());
            replicas.push(Replica::start_tls(bin, &id, db, &extra, client_tls).await?);
        }
        let api = replicas[0].api()?;
        for name in ["bench-source", "bench-echo"] {
            let template: CreateTemplate =
                serde_json::from_value(serde_json::json!({ "name": name, "command": ["true"] }))?;
            api.create_template(&template).await?;
        }
        let agent_id = format!("bench-agent-{}", setup_tag(count, tls.is_some()));
        let key = api.create_agent_key(&agent_id).await?.secret;
        let agent = agent::spawn(
            agent::Spec {
                ws_url: replicas[0].agent_ws_url(),
                key,
                agent_id,
                heartbeat: HEARTBEAT,
                targets: [
                    ("bench-source".to_owned(), targets[0]),
                    ("bench-echo".to_owned(), targets[1]),
                ]
                .into(),
                max_sessions: agent::MAX_SESSIONS,
                tls: tls.map(|t| t.client.clone()),
            },
            stop,
        )
        .await?;
        let logs = |r: &[Replica]| r.iter().map(Replica::logs).collect::<Vec<_>>().join("\n");
        let source_session = running_session(&api, "bench-source")
            .await
            .with_context(|| logs(&replicas))?;
        let echo_session = running_session(&api, "bench-echo")
            .await
            .with_context(|| logs(&replicas))?;
        let viewer_api = replicas[count - 1].api()?;
        let mut name = if count == 1 {
            "1 replica".to_owned()
        } else {
            "2 replicas, viewer on the other".to_owned()
        };
        if tls.is_some() {
            name.push_str(", TLS");
        }
        if recordings.is_some() {
            name.push_str(", recorded");
        }
        Ok(Self {
            name,
            replicas,
            viewer_api,
            source_session,
            echo_session,
            agent,
            tls,
        })
    }

    /// A fresh viewer path to `session` (tokens are short-lived and single-use).
    async fn viewer(&self, session: Uuid) -> anyhow::Result<Path> {
        let url = self.viewer_api.connect_session(session).await?.url;
        Ok(path(url, self.tls))
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(Replica::logs)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Per-run values of one path: bulk MB/s, round-trip p50 and p99.
#[derive(Default)]
struct Series {
    bulk: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Series {
    async fn measure(
        &mut self,
        bulk: Path,
        echo: Path,
        bytes: usize,
        p: &Params,
    ) -> anyhow::Result<()> {
        self.bulk.push(pipe::bulk(&bulk, bytes).await?);
        let mut lat = pipe::round_trips(&echo, p.round_trips, p.message_bytes).await?;
        lat.sort_by(f64::total_cmp);
        self.p50.push(percentile(&lat, 50.0));
        self.p99.push(percentile(&lat, 99.0));
        Ok(())
    }
}

pub async fn run(bin: &std::path::Path, p: &Params) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    if p.runs == 0 || p.bulk_mb == 0 || p.round_trips == 0 || p.message_bytes == 0 {
        bail!("runs, bulk size, round trips and message size must be positive");
    }
    if p.security.is_empty() {
        bail!("`--security` needs plain, tls or both");
    }
    let bytes = p.bulk_mb * 1_000_000;
    let source = pipe::source(bytes).await?;
    let echo = pipe::echo().await?;
    let tls = BenchTls::new()?;
    // websockify the way each setup runs: plain, and serving TLS.
    let mut references = Vec::new();
    for security in &p.security {
        let tls = (*security == Security::Tls).then_some(&tls);
        let source = Websockify::start(source.addr, tls).await?;
        let echo = Websockify::start(echo.addr, tls).await?;
        references.push((*security, source, echo, Series::default()));
    }

    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let targets = [source.addr, echo.addr];
    // With --record, every viewing is also recorded into this folder (shared by the replicas).
    let recordings = tempfile::tempdir()?;
    let store = format!("dir:{}", recordings.path().display());
    let store = p.record.then_some(store.as_str());
    let mut setups = Vec::new();
    for security in &p.security {
        let tls = (*security == Security::Tls).then_some(&tls);
        for redis_url in [None, Some(redis.url())] {
            let db = pg.create_database()?;
            let setup = Setup::start(
                bin,
                &db,
                redis_url.as_deref(),
                store,
                targets,
                stop_rx.clone(),
                tls,
            );
            setups.push(setup.await?);
        }
    }

    let mut ours: Vec<Series> = setups.iter().map(|_| Series::default()).collect();
    let mut tcp = Series::default();
    // Warm-up, not recorded (whole transfers: a viewer leaving early breaks the agent's pipe).
    for s in &setups {
        let url = s.viewer(s.source_session).await?;
        pipe::bulk(&url, bytes).await.with_context(|| s.logs())?;
    }
    for run in 0..p.runs {
        for (s, series) in setups.iter().zip(&mut ours) {
            let bulk = s.viewer(s.source_session).await?;
            let echo = s.viewer(s.echo_session).await?;
            series
                .measure(bulk, echo, bytes, p)
                .await
                .with_context(|| s.logs())?;
        }
        for (security, source, echo, series) in &mut references {
            let tls = (*security == Security::Tls).then_some(&tls);
            let (bulk, echo) = (path(source.url.clone(), tls), path(echo.url.clone(), tls));
            series.measure(bulk, echo, bytes, p).await?;
        }
        tcp.measure(Path::Tcp(source.addr), Path::Tcp(echo.addr), bytes, p)
            .await?;
        println!(
            "  run {}: bulk MB/s {}, {}, TCP {:.0}",
            run + 1,
            ours.iter()
                .zip(&setups)
                .map(|(o, s)| format!("{} {:.0}", s.name, o.bulk[run]))
                .collect::<Vec<_>>()
                .join(", "),
            references
                .iter()
                .map(|(security, _, _, r)| format!(
                    "{} {:.0}",
                    websockify_name(*security),
                    r.bulk[run]
                ))
                .collect::<Vec<_>>()
                .join(", "),
            tcp.bulk[run],
        );
    }
    let _ = stop_tx.send(true);
    for s in setups.iter_mut() {
        (&mut s.agent).await??;
    }

    let mut rows = Vec::new();
    for (setup, series) in setups.iter().zip(ours) {
        let security = if setup.tls.is_some() {
            Security::Tls
        } else {
            Security::Plain
        };
        let wsify = references
            .iter()
            .find(|r| r.0 == security)
            .map(|r| &r.3)
            .context("a websockify reference for every setup")?;
        for (metric, unit, values, refs) in [
            (
                "downstream bulk",
                "MB/s",
                series.bulk,
                [&wsify.bulk, &tcp.bulk],
            ),
            ("round trip p50", "ms", series.p50, [&wsify.p50, &tcp.p50]),
            ("round trip p99", "ms", series.p99, [&wsify.p99, &tcp.p99]),
        ] {
            let value = Stat::of(values);
            for (name, reference) in [websockify_name(security), "raw TCP"].into_iter().zip(refs) {
                let reference = Stat::of(reference.clone());
                rows.push(Row {
                    setup: setup.name.clone(),
                    metric: metric.into(),
                    unit: unit.into(),
                    value: value.clone(),
                    reference: Some(Reference {
                        name: name.into(),
                        ratio: value.median / reference.median,
                        value: reference,
                    }),
                });
            }
        }
    }
    let notes = vec![
        format!(
            "Bulk: {} MB (10⁶ bytes) from a TCP source, timed from opening the connection to the last byte; \
             round trips: {} messages of {} bytes through a TCP echo, one at a time.",
            p.bulk_mb, p.round_trips, p.message_bytes
        ),
        "With 2 replicas the agent holds its control and data connections to the first and the viewer \
         connects to the second, so every byte takes the replica-to-replica hop."
            .into(),
        "With TLS the replicas serve https/wss with certificates of a CA made for the run, the agent's \
         data connection and the replica hop are encrypted too, and the reference is websockify \
         serving TLS (`--ssl-only`); raw TCP stays plain."
            .into(),
        "Ratios are ours ÷ reference: above 1 is better for MB/s, worse for latency.".into(),
        "The client, the replicas, the simulated agent, websockify and the targets share this machine's CPUs."
            .into(),
    ];
    Ok((rows, notes))
}

fn websockify_name(security: Security) -> &'static str {
    match security {
        Security::Plain => "websockify",
        Security::Tls => "websockify, TLS",
    }
}

/// `single`/`pair`, and `-tls` when the replicas serve TLS.
fn setup_tag(replicas: usize, tls: bool) -> String {
    let tag = if replicas == 1 { "single" } else { "pair" };
    if tls {
        format!("{tag}-tls")
    } else {
        tag.to_owned()
    }
}
