//! The StreamSpace agent: runs next to the compute, connects *out* to the control plane over one
//! WebSocket, and executes the commands it receives (start, stop, hibernate, wake a session).
//!
//! How the parts fit:
//! - [`run`] builds the [`runtime`] and, with high availability, waits until this process leads
//!   ([`leadership`]); the leader recovers the sessions a previous agent process left behind,
//!   then hands over to the supervisor, which keeps one connection open at a time ([`connection`]), rotating through
//!   the configured servers with backoff;
//! - each connection registers (reporting every session the agent holds), then reads commands
//!   and passes them to the [`executor`], which acknowledges at once, suppresses duplicates with
//!   a persisted [`command_log`], and runs actions on a bounded pool against a [`runtime`];
//! - a `tunnel_open` starts a viewer stream ([`tunnel`]): its own data connection to the control
//!   plane (a raw stream after an HTTP upgrade, a WebSocket if that is refused), copied to and
//!   from the session's VNC server;
//! - everything the agent says goes through one bounded outbox drained by the current
//!   connection's writer, so results produced while disconnected are sent after reconnecting;
//! - a leader that loses its leadership stops all of that and stands by again; on shutdown it
//!   steps down, so a standby takes over at once.

pub mod backoff;
pub mod command_log;
mod config;
pub mod connection;
pub mod endpoint;
mod error;
pub mod executor;
pub mod idle;
pub mod leadership;
pub mod private_dir;
pub mod runtime;
mod supervisor;
pub mod transfer;
pub mod tunnel;

use std::sync::Arc;

use streamspace_proto::SessionState;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::{AgentConfig, RuntimeKind, UnknownRuntime};
pub use error::{AgentError, Chain};
use leadership::{FlockLeadership, Leadership, LeaseLeadership};
use runtime::{ProcessRuntime, ProcessRuntimeConfig, Runtime};

/// Messages waiting for the writer; producers wait when it is full.
const OUTBOX_DEPTH: usize = 256;

/// Runs the agent until `shutdown` is cancelled. Returns an error only for problems a restart
/// would not fix (bad configuration, unusable state directory); connection problems are retried
/// forever.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    // Only one TLS backend is compiled in; installing it can only fail if one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (runtime, leadership) = prepare(&config).await?;
    match leadership {
        Some(leadership) => run_elected(config, runtime, leadership.as_ref(), shutdown).await,
        None => run_with_runtime(config, runtime, shutdown).await,
    }
}

/// The configured runtime, and how this process learns whether it is the active one (`None`:
/// it always is).
async fn prepare(
    config: &AgentConfig,
) -> Result<(Arc<dyn Runtime>, Option<Box<dyn Leadership>>), AgentError> {
    let flock = || -> Option<Box<dyn Leadership>> {
        let ha = config.ha.clone()?;
        Some(Box::new(FlockLeadership::new(ha, &config.agent_id)))
    };
    match config.runtime {
        RuntimeKind::Process => {
            let sessions = config.state_dir.join("sessions");
            let mut process = ProcessRuntimeConfig::new(sessions);
            process.home_root = config.state_dir.join("homes");
            process.transfer_home = config.transfer_home.clone();
            if let Some(user) = &config.run_as {
                check_run_as(user)?;
                process.run_as = Some(user.clone());
                process.run_dir = run_as_dir(&config.agent_id);
                // The state directory is private to the agent; the sessions' user must reach
                // its home.
                process.home_root = run_as_home_root(&config.agent_id);
            }
            let runtime = ProcessRuntime::new(process);
            Ok((Arc::new(runtime), flock()))
        }
        _ if config.run_as.is_some() => Err(AgentError::InvalidConfig(
            "--run-as applies to the process runtime only".to_owned(),
        )),
        RuntimeKind::Docker => {
            let mut docker = runtime::DockerRuntimeConfig::new(config.agent_id.clone());
            docker.host = config.docker_host.clone();
            docker.confinement = config.confinement.clone();
            let runtime =
                runtime::DockerRuntime::new(docker).map_err(|source| AgentError::Runtime {
                    runtime: config.runtime,
                    source,
                })?;
            Ok((Arc::new(runtime), flock()))
        }
        RuntimeKind::Kubernetes => {
            // Replicas always elect through the cluster's Lease, never through a lock file.
            let options = &config.kubernetes;
            let client = runtime::kubernetes::connect(options.kubeconfig.as_deref())
                .await
                .map_err(AgentError::Cluster)?;
            let namespace = options
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let mut sessions = options.runtime_config(&namespace, &config.agent_id);
            sessions.confinement = config.confinement.clone();
            let lease = options.lease_config(&namespace, &config.agent_id);
            let runtime =
                runtime::KubernetesRuntime::new(client.clone(), sessions).map_err(|source| {
                    AgentError::Runtime {
                        runtime: config.runtime,
                        source,
                    }
                })?;
            Ok((
                Arc::new(runtime),
                Some(Box::new(LeaseLeadership::new(client, lease))),
            ))
        }
    }
}

/// Whether sessions can be started as `user`: the user exists and the agent may switch to it.
fn check_run_as(user: &str) -> Result<(), AgentError> {
    runtime::process::check_run_as(user).map_err(|e| AgentError::InvalidConfig(e.to_string()))
}

/// Where the user homes of an agent with `--run-as` live: persistent (unlike `/run`), and
/// reachable by the sessions' user (unlike the agent's private state directory).
fn run_as_home_root(agent_id: &str) -> std::path::PathBuf {
    std::path::Path::new(RUN_AS_HOME_ROOT)
        .join(format!("agent-{}", safe_name(agent_id)))
        .join("homes")
}

/// The parent of the user homes of agents with `--run-as`.
pub const RUN_AS_HOME_ROOT: &str = "/var/lib/streamspace";

/// Where sessions run as another user get their directories: under `/run` (root's, on a
/// memory file system), since the agent's state directory is closed to that user.
fn run_as_dir(agent_id: &str) -> std::path::PathBuf {
    std::path::Path::new(RUN_AS_ROOT).join(format!("agent-{}", safe_name(agent_id)))
}

fn safe_name(agent_id: &str) -> String {
    agent_id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect()
}

/// The parent of the session directories of agents with `--run-as`.
pub const RUN_AS_ROOT: &str = "/run/streamspace";

/// Runs the agent whenever this process leads: acquire leadership, run until the term is lost
/// (then stand by and acquire again) or `shutdown` (then step down so a standby takes over at
/// once). Only the leader recovers sessions and connects.
pub async fn run_elected(
    config: AgentConfig,
    runtime: Arc<dyn Runtime>,
    leadership: &dyn Leadership,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    loop {
        let Some(term) = leadership
            .acquire(&shutdown)
            .await
            .map_err(AgentError::Leadership)?
        else {
            return Ok(());
        };
        let active = shutdown.child_token();
        let agent = run_with_runtime(config.clone(), runtime.clone(), active.clone());
        tokio::pin!(agent);
        let (lost, finished) = tokio::select! {
            result = &mut agent => (false, Some(result)),
            () = term.lost() => (true, None),
        };
        active.cancel();
        let result = match finished {
            Some(result) => result,
            None => agent.await,
        };
        if lost && !shutdown.is_cancelled() {
            result?;
            tracing::warn!(agent_id = %config.agent_id, "lost the agent lease; standing by again");
            continue;
        }
        term.step_down().await;
        return result;
    }
}

/// [`run`] with a runtime chosen by the caller (tests, embedders).
pub async fn run_with_runtime(
    config: AgentConfig,
    runtime: Arc<dyn Runtime>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let urls = validate(&config)?;
    // Only one TLS backend is compiled in; installing it can only fail if one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = streamspace_client::tls::client_config(&config.tls).map_err(AgentError::Tls)?;
    private_dir::ensure(&config.state_dir).map_err(|source| AgentError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let idle = idle::IdleRuntime::new(runtime, Some(config.state_dir.join("idle.json")));
    let recovered = idle.recover().await.map_err(AgentError::Recovery)?;
    let (outbox_tx, outbox_rx) = mpsc::channel(OUTBOX_DEPTH);
    let idle_sweep = tokio::spawn(idle::sweep(
        idle.clone(),
        outbox_tx.clone(),
        shutdown.child_token(),
    ));
    let executor = executor::Executor::start(
        idle.clone(),
        &config.state_dir,
        config.max_sessions,
        config.max_concurrent_commands,
        config.command_log_capacity,
        outbox_tx.clone(),
    )
    .map_err(|source| AgentError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    executor.add_failures(
        recovered
            .iter()
            .filter(|s| s.state == SessionState::Failed)
            .map(runtime::SessionInfo::to_status),
    );
    tracing::info!(
        agent_id = %config.agent_id,
        runtime = %config.runtime,
        recovered = recovered.len(),
        "agent starting"
    );
    let tunnels = tunnel::Tunnels::new(
        executor.runtime().clone(),
        config.key.clone(),
        config.connect_timeout,
        Some(tls.clone()),
        outbox_tx.clone(),
    );
    if config.websocket_streams {
        tunnels.websockets_only();
    }
    tunnels.watch_viewers(idle.watch().clone());
    let ctx = connection::Context {
        config: &config,
        executor: &executor,
        outbox: &outbox_tx,
        tunnels: &tunnels,
        tls: Some(&tls),
    };
    supervisor::keep_connected(&ctx, &urls, outbox_rx, &shutdown).await;
    tunnels.shutdown().await;
    idle_sweep.abort();
    tracing::info!(agent_id = %config.agent_id, "agent stopped");
    Ok(())
}

fn validate(config: &AgentConfig) -> Result<Vec<url::Url>, AgentError> {
    let invalid = |what: &str| Err(AgentError::InvalidConfig(what.to_owned()));
    if config.servers.is_empty() {
        return invalid("no control-plane server URL given");
    }
    if config.agent_id.trim().is_empty() {
        return invalid("the agent id is empty");
    }
    if config.key.is_empty() {
        return invalid("the agent key is empty");
    }
    if config.max_concurrent_commands == 0 {
        return invalid("max_concurrent_commands must be at least 1");
    }
    for server in &config.servers {
        streamspace_client::tls::check_plain(server, config.allow_insecure)?;
    }
    config
        .servers
        .iter()
        .map(|s| endpoint::connect_url(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_directories_are_named_safely_per_agent() {
        assert_eq!(
            run_as_dir("edge-1"),
            std::path::Path::new("/run/streamspace/agent-edge-1")
        );
        assert_eq!(
            run_as_dir("../x y"),
            std::path::Path::new("/run/streamspace/agent-.._x_y")
        );
    }

    #[tokio::test]
    async fn run_as_is_refused_where_it_cannot_work() {
        let mut config = AgentConfig::new(vec!["http://x".into()], "a1", "k", "/nonexistent");
        config.runtime = RuntimeKind::Docker;
        config.run_as = Some("nobody".into());
        let err = prepare(&config).await.err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("process runtime only")),
            "{err:?}"
        );
        config.runtime = RuntimeKind::Process;
        config.run_as = Some("no-such-user-xyz".into());
        let err = prepare(&config).await.err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("no-such-user-xyz")),
            "{err:?}"
        );
    }

    #[test]
    fn a_plain_url_to_another_host_is_refused_unless_allowed() {
        let mut config = AgentConfig::new(
            vec![
                "http://127.0.0.1:8080".into(),
                "http://cp.example:8080".into(),
            ],
            "a1",
            "key",
            "/nonexistent",
        );
        let err = validate(&config).expect_err("plain http to cp.example");
        let text = err.to_string();
        assert!(
            text.contains("http://cp.example:8080") && text.contains("--allow-insecure"),
            "the refusal names the URL and the way out: {text}"
        );
        config.allow_insecure = true;
        assert_eq!(validate(&config).map(|u| u.len()).ok(), Some(2));
        config.allow_insecure = false;
        config.servers = vec!["https://cp.example".into()];
        assert!(validate(&config).is_ok(), "https is always accepted");
    }
}
