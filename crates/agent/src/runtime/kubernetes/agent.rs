//! The agent with the Kubernetes runtime: several replicas share one agent id, and the
//! coordination Lease ([`super::lease`]) decides which one is active.
//!
//! A replica waits as a standby until it holds the lease; then — and only then — it recovers
//! the sessions from the cluster and connects to the control plane. If it loses the lease
//! (another holder, or no renewal within the deadline) it drops its connection, stops taking
//! commands and goes back to standing by. On shutdown it releases the lease so a standby takes
//! over at once. The control plane therefore sees at most one connection for the agent id at a
//! time (and its connection epochs settle any overlap during a handover).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio_util::sync::CancellationToken;

use super::lease::{LeaseConfig, LeaseElector};
use super::{KubernetesRuntime, KubernetesRuntimeConfig};
use crate::{AgentConfig, AgentError};

/// How the agent reaches its cluster; everything optional.
#[derive(Debug, Clone, Default)]
pub struct KubernetesOptions {
    /// Namespace of the sessions and the lease [default: the client's namespace — the
    /// service account's namespace in-cluster, the kubeconfig context's outside].
    pub namespace: Option<String>,
    /// A kubeconfig file [default: `KUBECONFIG`/`~/.kube/config`, else the in-cluster service
    /// account].
    pub kubeconfig: Option<PathBuf>,
    /// Lease duration [default: 15 s]; renewal and step-down deadlines scale with it.
    pub lease_duration: Option<Duration>,
    /// Storage class of home volumes [default: the cluster's default class].
    pub storage_class: Option<String>,
    /// Size of a home volume, a Kubernetes quantity [default: `10Gi`].
    pub home_size: Option<String>,
    /// The cluster's DNS domain, for VNC addresses [default: `cluster.local`].
    pub cluster_domain: Option<String>,
}

/// Connects to the cluster and runs the agent with leader election until `shutdown`.
pub async fn run(
    config: AgentConfig,
    options: &KubernetesOptions,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    // Only one TLS backend is compiled in; installing it can only fail if one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = super::connect(options.kubeconfig.as_deref())
        .await
        .map_err(AgentError::InvalidConfig)?;
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let mut runtime = KubernetesRuntimeConfig::new(&namespace, &config.agent_id);
    runtime.storage_class = options.storage_class.clone();
    if let Some(size) = &options.home_size {
        runtime.home_size = size.clone();
    }
    if let Some(domain) = &options.cluster_domain {
        runtime.cluster_domain = domain.clone();
    }
    let mut lease = LeaseConfig::new(&namespace, &config.agent_id);
    if let Some(d) = options.lease_duration {
        lease.duration = d;
        lease.renew_every = d / 7;
        lease.renew_deadline = d * 2 / 3;
    }
    run_with_client(config, client, runtime, lease, shutdown).await
}

/// [`run`] with a client and settings chosen by the caller (tests use a mock API service).
pub async fn run_with_client(
    config: AgentConfig,
    client: Client,
    runtime: KubernetesRuntimeConfig,
    lease: LeaseConfig,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let agent_id = config.agent_id.clone();
    loop {
        let mut elector = LeaseElector::new(client.clone(), lease.clone());
        tracing::info!(%agent_id, lease = %lease.name, holder = %lease.holder, "waiting for the agent lease");
        if !elector.acquire(&shutdown).await {
            return Ok(());
        }
        let active = shutdown.child_token();
        let sessions = KubernetesRuntime::new(client.clone(), runtime.clone())
            .map_err(AgentError::InvalidConfig)?;
        let agent = crate::run_with_runtime(config.clone(), Arc::new(sessions), active.clone());
        tokio::pin!(agent);
        let (lost, finished) = tokio::select! {
            result = &mut agent => (false, Some(result)),
            lost = elector.hold(&active) => (lost, None),
        };
        active.cancel();
        let result = match finished {
            Some(result) => result,
            None => agent.await,
        };
        if lost && !shutdown.is_cancelled() {
            result?;
            tracing::warn!(%agent_id, "lost the agent lease; standing by again");
            continue;
        }
        if let Err(e) = elector.release().await {
            tracing::warn!(%agent_id, error = %e, "could not release the agent lease");
        }
        return result;
    }
}
