//! What an operator can set for the `kubernetes` runtime, and the runtime and lease settings
//! that follow from it.

use std::path::PathBuf;
use std::time::Duration;

use super::KubernetesRuntimeConfig;
use crate::leadership::LeaseConfig;

/// How the agent reaches its cluster; everything optional.
#[derive(Debug, Clone, Default)]
pub struct KubernetesOptions {
    /// Namespace of the agent's lease, and of the sessions unless `session_namespace` is set
    /// [default: the client's namespace — the service account's namespace in-cluster, the
    /// kubeconfig context's outside].
    pub namespace: Option<String>,
    /// Namespace of the sessions' objects, so that they can be kept apart from the agent and
    /// the control plane (their own RBAC and network policy) [default: `namespace`].
    pub session_namespace: Option<String>,
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
    /// Access mode of users' home claims: `ReadWriteOnce`, `ReadWriteOncePod` or
    /// `ReadWriteMany` [default: `ReadWriteOnce`].
    pub user_home_access_mode: Option<String>,
    /// Size of a user's home claim [default: `home_size`].
    pub user_home_size: Option<String>,
    /// Storage class of users' home claims [default: `storage_class`].
    pub user_home_storage_class: Option<String>,
    /// The file-transfer sidecar of session pods [default: none, so no file transfer].
    pub transfer: Option<super::TransferSidecar>,
}

impl KubernetesOptions {
    /// The runtime's settings for the sessions of `agent_id`, whose lease lives in `namespace`:
    /// in the session namespace if one is set, else in `namespace` too.
    pub fn runtime_config(&self, namespace: &str, agent_id: &str) -> KubernetesRuntimeConfig {
        let sessions = self.session_namespace.as_deref().unwrap_or(namespace);
        let mut runtime = KubernetesRuntimeConfig::new(sessions, agent_id);
        runtime.storage_class = self.storage_class.clone();
        if let Some(size) = &self.home_size {
            runtime.home_size = size.clone();
        }
        if let Some(domain) = &self.cluster_domain {
            runtime.cluster_domain = domain.clone();
        }
        if let Some(mode) = &self.user_home_access_mode {
            runtime.user_home_access_mode = mode.clone();
        }
        runtime.user_home_size = self.user_home_size.clone();
        runtime.user_home_storage_class = self.user_home_storage_class.clone();
        runtime.transfer = self.transfer.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_in_their_own_namespace_when_one_is_set() {
        let mut options = KubernetesOptions::default();
        assert_eq!(options.runtime_config("agents", "a1").namespace, "agents");
        options.session_namespace = Some("desktops".to_owned());
        assert_eq!(options.runtime_config("agents", "a1").namespace, "desktops");
        assert_eq!(options.lease_config("agents", "a1").namespace, "agents");
    }
}
