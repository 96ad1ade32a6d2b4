//! `streamspace agent --server URL --agent-id ID --key KEY`: run an agent.

use anyhow::Context;
use streamspace_agent::{AgentConfig, RuntimeKind};
use tokio_util::sync::CancellationToken;

use crate::cli::{self, AgentRunArgs, RuntimeArg};
use crate::legacy_env::{self, process_env};
use crate::secrets;

pub async fn run(args: AgentRunArgs) -> anyhow::Result<()> {
    let servers = legacy_env::agent_servers(args.servers, &process_env)?;
    if servers.is_empty() {
        anyhow::bail!(
            "--server (or STREAMSPACE_AGENT_SERVERS) is required to run an agent \
             (the control plane's http(s):// URL)"
        );
    }
    let agent_id = args
        .agent_id
        .context("--agent-id is required to run an agent")?;
    let key = args
        .key
        .context("--key is required to run an agent (create one with `streamspace agent-key create AGENT_ID`)")?;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => match legacy_env::agent_state_parent(&process_env) {
            Some(parent) => parent,
            None => secrets::user_data_dir()?,
        }
        .join(format!("agent-{agent_id}")),
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let mut config = AgentConfig::new(servers, agent_id, key, state_dir);
    config.runtime = match args.runtime {
        RuntimeArg::Process => RuntimeKind::Process,
        RuntimeArg::Docker => RuntimeKind::Docker,
        RuntimeArg::Kubernetes => RuntimeKind::Kubernetes,
    };
    config.docker_host = args.docker_host;
    let ha_retry = legacy_env::duration(
        args.ha_retry,
        "STREAMSPACE_HA_RETRY_MS",
        "STREAMSPACE_HA_RETRY",
        cli::HA_RETRY,
        &process_env,
    )?;
    config.ha = args
        .ha_lock_file
        .map(|lock_file| streamspace_agent::ha::HaConfig {
            lock_file,
            retry: ha_retry.unwrap_or(cli::DEFAULT_HA_RETRY),
        });
    config.kubernetes.namespace = args.namespace;
    config.kubernetes.kubeconfig = args.kubeconfig;
    let lease = legacy_env::duration(
        args.lease,
        "STREAMSPACE_LEASE_SECS",
        "STREAMSPACE_LEASE",
        cli::LEASE,
        &process_env,
    )?;
    config.kubernetes.lease_duration = Some(lease.unwrap_or(cli::DEFAULT_LEASE));
    config.kubernetes.storage_class = args.storage_class;
    config.kubernetes.home_size = Some(args.home_size);
    config.kubernetes.cluster_domain = Some(args.cluster_domain);
    config.max_sessions = args.max_sessions;
    config.labels = args.labels.into_iter().collect();
    config.max_concurrent_commands = usize::try_from(args.max_concurrent_commands)
        .expect("a u32 fits in usize on supported targets");

    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        super::stop_signal().await;
        stopper.cancel();
    });
    streamspace_agent::run(config, shutdown)
        .await
        .context("agent stopped with an error")
}
