//! `streamspace agent --server URL --agent-id ID --key KEY`: run an agent.

use anyhow::Context;
use streamspace_agent::{AgentConfig, RuntimeKind};
use tokio_util::sync::CancellationToken;

use crate::cli::{AgentRunArgs, RuntimeArg};
use crate::secrets;

pub async fn run(args: AgentRunArgs) -> anyhow::Result<()> {
    if args.servers.is_empty() {
        anyhow::bail!("--server is required to run an agent (the control plane's http(s):// URL)");
    }
    let agent_id = args
        .agent_id
        .context("--agent-id is required to run an agent")?;
    let key = args
        .key
        .context("--key is required to run an agent (create one with `streamspace agent-key create AGENT_ID`)")?;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => secrets::default_data_dir()?.join(format!("agent-{agent_id}")),
    };
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let mut config = AgentConfig::new(args.servers, agent_id, key, state_dir);
    config.runtime = match args.runtime {
        RuntimeArg::Process => RuntimeKind::Process,
        RuntimeArg::Docker => RuntimeKind::Docker,
        RuntimeArg::Kubernetes => RuntimeKind::Kubernetes,
    };
    config.docker_host = args.docker_host;
    config.ha = args
        .ha_lock_file
        .map(|lock_file| streamspace_agent::leadership::HaConfig {
            lock_file,
            retry: std::time::Duration::from_millis(args.ha_retry_ms.max(10)),
        });
    config.kubernetes.namespace = args.namespace;
    config.kubernetes.kubeconfig = args.kubeconfig;
    config.kubernetes.lease_duration = Some(std::time::Duration::from_secs(args.lease_secs));
    config.kubernetes.storage_class = args.storage_class;
    config.kubernetes.home_size = Some(args.home_size);
    config.kubernetes.cluster_domain = Some(args.cluster_domain);
    config.max_sessions = args.max_sessions;
    config.labels = args.labels.into_iter().collect();
    config.max_concurrent_commands = args.max_concurrent_commands.max(1);

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
