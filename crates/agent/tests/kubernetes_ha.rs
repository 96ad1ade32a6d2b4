//! Two agent replicas with one agent id on the Kubernetes runtime, each running the agent's
//! leadership loop with the Lease, against a fake API server (no API server can run here; see
//! `kube_api`) and an in-test control plane: only the lease holder connects; when it is killed
//! the standby takes the lease over, recovers the sessions from the cluster, registers with
//! them, and runs the next command.

mod kube_api;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use kube_api::FakeApi;
use serde_json::json;
use streamspace_agent::AgentConfig;
use streamspace_agent::leadership::{LeaseConfig, LeaseLeadership};
use streamspace_agent::runtime::{KubernetesRuntime, KubernetesRuntimeConfig, Runtime};
use streamspace_proto::SessionState;
use streamspace_proto::api::{Action, HomePolicy, Template, TemplatePorts, TemplateResources};
use streamspace_proto::wire::{self, AgentMessage, CommandMessage, Register, ServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "edge";

type Ws = WebSocketStream<TcpStream>;

async fn control_plane() -> Result<(String, mpsc::Receiver<Ws>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(stream).await
                && tx.send(ws).await.is_err()
            {
                return;
            }
        }
    });
    Ok((url, rx))
}

async fn recv(ws: &mut Ws) -> Result<AgentMessage> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("no message from the agent")?
            .context("the agent closed the connection")??;
        if let Message::Text(text) = frame {
            return Ok(wire::decode_agent_message(text.as_str())?);
        }
    }
}

async fn register(ws: &mut Ws) -> Result<Register> {
    let AgentMessage::Register(register) = recv(ws).await? else {
        bail!("the first message was not register");
    };
    let welcome = ServerMessage::Welcome {
        accepted: true,
        heartbeat_interval_secs: 1,
        replica_id: "r1".into(),
        epoch: 1,
        reason: None,
        result_receipts: false,
    };
    ws.send(Message::text(wire::encode(&welcome))).await?;
    Ok(register)
}

fn replica(
    api: &FakeApi,
    url: &str,
    holder: &str,
    state_dir: &std::path::Path,
) -> Result<(
    CancellationToken,
    tokio::task::JoinHandle<Result<(), streamspace_agent::AgentError>>,
)> {
    let mut config = AgentConfig::new(vec![url.to_owned()], "edge-1", "key", state_dir);
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(200);
    let mut runtime = KubernetesRuntimeConfig::new(NS, "edge-1");
    runtime.poll_interval = Duration::from_millis(10);
    let mut lease = LeaseConfig::new(NS, "edge-1");
    lease.holder = holder.to_owned();
    lease.duration = Duration::from_secs(1);
    lease.renew_every = Duration::from_millis(100);
    lease.renew_deadline = Duration::from_millis(600);
    let shutdown = CancellationToken::new();
    let client = api.client(NS);
    let sessions =
        Arc::new(KubernetesRuntime::new(client.clone(), runtime).map_err(anyhow::Error::msg)?);
    let leadership = LeaseLeadership::new(client, lease);
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { streamspace_agent::run_elected(config, sessions, &leadership, shutdown).await }
    });
    Ok((shutdown, task))
}

fn holder(api: &FakeApi) -> Option<String> {
    api.object("leases", "streamspace-agent-edge-1")?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn the_standby_takes_over_after_the_active_replica_is_killed() -> Result<()> {
    let api = FakeApi::new();
    api.make_pods_ready();
    // A session already running in the cluster, started by an earlier agent process.
    let session = Uuid::now_v7();
    let mut cfg = KubernetesRuntimeConfig::new(NS, "edge-1");
    cfg.poll_interval = Duration::from_millis(10);
    let earlier = KubernetesRuntime::new(api.client(NS), cfg).map_err(anyhow::Error::msg)?;
    let template = Template {
        name: "desktop".into(),
        description: String::new(),
        command: Vec::new(),
        env: Default::default(),
        image: Some("desktop:1".into()),
        ports: TemplatePorts::default(),
        resources: TemplateResources::default(),
        persistent_home: HomePolicy::None,
        idle_timeout_secs: None,
        allowed_groups: Vec::new(),
        category: None,
        tags: Vec::new(),
        icon: None,
        rules: Default::default(),
        created_at: Utc::now(),
    };
    earlier.start(session, &template).await?;

    let (url, mut connections) = control_plane().await?;
    let dir_a = tempfile::tempdir()?;
    let dir_b = tempfile::tempdir()?;
    let (_stop_a, task_a) = replica(&api, &url, "pod-a", dir_a.path())?;
    let mut ws_a = tokio::time::timeout(WAIT, connections.recv())
        .await?
        .context("replica a connects")?;
    let reg_a = register(&mut ws_a).await?;
    assert_eq!(reg_a.platform, "kubernetes");
    assert_eq!(holder(&api).as_deref(), Some("pod-a"));

    // The standby starts while A is active: it stands by and does not connect.
    let (stop_b, task_b) = replica(&api, &url, "pod-b", dir_b.path())?;
    streamspace_testkit::wait_until("the standby to check the lease", WAIT, || {
        let seen = api
            .log()
            .iter()
            .filter(|r| r.path.ends_with("/leases/streamspace-agent-edge-1"))
            .count();
        async move { (seen >= 10).then_some(()) }
    })
    .await?;
    assert_eq!(holder(&api).as_deref(), Some("pod-a"));
    assert!(
        connections.try_recv().is_err(),
        "the standby must not connect"
    );

    // Kill A (no clean shutdown, no lease release).
    task_a.abort();
    let _ = task_a.await;
    drop(ws_a);

    // B takes over, recovers from the cluster and registers with the session.
    let mut ws_b = tokio::time::timeout(WAIT, connections.recv())
        .await?
        .context("the standby connects after taking over")?;
    assert_eq!(holder(&api).as_deref(), Some("pod-b"));
    let reg_b = register(&mut ws_b).await?;
    let adopted: Vec<(Uuid, SessionState)> = reg_b
        .sessions
        .iter()
        .map(|s| (s.session_id, s.state))
        .collect();
    assert_eq!(adopted, [(session, SessionState::Running)]);

    // A command issued after the kill completes on the new active replica.
    let stop = CommandMessage {
        command_id: Uuid::now_v7(),
        action: Action::StopSession,
        session_id: Some(session),
        payload: json!(null),
        attempt: 1,
    };
    ws_b.send(Message::text(wire::encode(&ServerMessage::Command(
        stop.clone(),
    ))))
    .await?;
    loop {
        match recv(&mut ws_b).await? {
            AgentMessage::Complete { command_id, .. } if command_id == stop.command_id => break,
            AgentMessage::Failed {
                command_id, error, ..
            } if command_id == stop.command_id => {
                bail!("stop failed: {error}")
            }
            _ => {}
        }
    }
    assert!(api.writes().contains(&format!(
        "DELETE /apis/apps/v1/namespaces/{NS}/deployments/ss-{session}"
    )));

    // A clean shutdown releases the lease for the next replica.
    stop_b.cancel();
    tokio::time::timeout(WAIT, task_b).await???;
    assert_eq!(holder(&api), None);
    Ok(())
}
