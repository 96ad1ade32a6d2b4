//! What an operator can set for the `kubernetes` runtime, and the runtime and lease settings
//! that follow from it.

use std::path::PathBuf;
use std::time::Duration;

use super::KubernetesRuntimeConfig;
use crate::leadership::LeaseConfig;

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

impl KubernetesOptions {
    /// The runtime's settings for the sessions of `agent_id` in `namespace`.
    pub fn runtime_config(&self, namespace: &str, agent_id: &str) -> KubernetesRuntimeConfig {
        let mut runtime = KubernetesRuntimeConfig::new(namespace, agent_id);
        runtime.storage_class = self.storage_class.clone();
        if let Some(size) = &self.home_size {
            runtime.home_size = size.clone();
        }
        if let Some(domain) = &self.cluster_domain {
            runtime.cluster_domain = domain.clone();
        }
        runtime
    }

    /// The lease of `agent_id`'s replicas in `namespace`.
    pub fn lease_config(&self, namespace: &str, agent_id: &str) -> LeaseConfig {
        let lease = LeaseConfig::new(namespace, agent_id);
        match self.lease_duration {
            Some(duration) => lease.with_duration(duration),
            None => lease,
        }
    }
}
