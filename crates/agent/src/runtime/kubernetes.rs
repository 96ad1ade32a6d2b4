//! The `kubernetes` runtime: each session is a one-replica Deployment (its root object), a
//! ClusterIP Service for its VNC port, and — when the template asks for a persistent home — a
//! PersistentVolumeClaim, all in one namespace and labelled with the session and agent ids.
//!
//! - A Deployment rather than a bare Pod: hibernating is patching it to zero replicas and waking
//!   back to one, with the pod spec kept by Kubernetes, and a pod lost with its node comes back.
//! - The Service (and the home claim under [`HomePolicy::Delete`]) carry an owner reference to
//!   the Deployment, so stopping a session is one DELETE of the Deployment; the garbage
//!   collector removes the rest. A [`HomePolicy::Retain`] claim has no owner and survives.
//! - Readiness is the pod's `Ready` condition (a TCP probe on the VNC port); the VNC address
//!   is the Service's cluster DNS name and port, reachable from wherever the agent runs
//!   in-cluster.
//! - A user's home (`persistent_home: user`) is a claim of its own, `ss-home-<user id>`, owned
//!   by nothing and made before the first Deployment that mounts it; those Deployments carry
//!   the user's id in a label, which is how a second session on a ReadWriteOnce home and the
//!   deletion of a home in use are refused.
//! - File transfer (with [`KubernetesRuntimeConfig::transfer`]): a sidecar container in the
//!   pod serves the session's transfer folder to the agent on the pod's address
//!   ([`crate::transfer::remote`]), with a per-session token kept in a Secret owned by the
//!   Deployment.
//! - Kubernetes is the only state: no local files. Recovery lists the Deployments labelled for
//!   this agent.
//!
//! [`HomePolicy::Delete`]: streamspace_proto::api::HomePolicy::Delete
//! [`HomePolicy::Retain`]: streamspace_proto::api::HomePolicy::Retain

pub mod objects;
pub mod observe;
mod options;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{InferConfigError, KubeconfigError};
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;
use streamspace_proto::SessionState;
use streamspace_proto::api::{DEFAULT_VNC_PORT, Template};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Confinement, Runtime, RuntimeError, SessionInfo};
use crate::Chain;
use objects::{LABEL_AGENT, session_name};
use observe::Observed;
pub use options::KubernetesOptions;

/// Settings of the Kubernetes runtime.
#[derive(Debug, Clone)]
pub struct KubernetesRuntimeConfig {
    /// Where the sessions' objects live.
    pub namespace: String,
    /// Written into the `streamspace.io/agent-id` label; must be a valid label value.
    pub agent_id: String,
    /// The cluster's DNS domain, for the VNC address (`<service>.<ns>.svc.<domain>:<port>`).
    pub cluster_domain: String,
    /// Size requested for a home volume.
    pub home_size: String,
    /// Storage class of home volumes (`None`: the cluster's default).
    pub storage_class: Option<String>,
    /// Where the home volume is mounted in the session's container.
    pub home_mount_path: String,
    /// Access mode of users' home claims (`persistent_home: user`): `ReadWriteOnce` (one node
    /// at a time: a user's second live session is refused), `ReadWriteOncePod` (one pod at a
    /// time: refused likewise) or `ReadWriteMany` (shared storage: sessions may run at once).
    pub user_home_access_mode: String,
    /// Size of a user's home claim (`None`: [`KubernetesRuntimeConfig::home_size`]).
    pub user_home_size: Option<String>,
    /// Storage class of users' home claims (`None`: [`KubernetesRuntimeConfig::storage_class`]).
    pub user_home_storage_class: Option<String>,
    /// How long a start or wake waits for the pod to become Ready (image pulls included).
    pub ready_timeout: Duration,
    /// How often readiness is polled.
    pub poll_interval: Duration,
    /// Read-only root and home volume group of session pods (the process limit is the
    /// kubelet's).
    pub confinement: Confinement,
    /// The file-transfer sidecar in every session pod (`None`: sessions carry no files).
    pub transfer: Option<TransferSidecar>,
}

/// The file-transfer sidecar of session pods (see [`crate::transfer::remote`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSidecar {
    /// The image that runs `streamspace transfer-sidecar`: the agent's own.
    pub image: String,
    /// The port it listens on, on the pod's address.
    pub port: u16,
    /// The user and group it runs as: the user the session images run as, so that the
    /// transfer folder and what is uploaded into it belong to the desktop's user.
    pub uid: i64,
}

/// The transfer sidecar's port unless the operator picks another.
pub const DEFAULT_TRANSFER_PORT: u16 = 5990;
/// The user the sidecar runs as unless the operator picks another (that of most desktop
/// images).
pub const DEFAULT_TRANSFER_UID: i64 = 1000;

impl KubernetesRuntimeConfig {
    pub fn new(namespace: impl Into<String>, agent_id: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            agent_id: agent_id.into(),
            cluster_domain: "cluster.local".to_owned(),
            home_size: "10Gi".to_owned(),
            storage_class: None,
            home_mount_path: "/home".to_owned(),
            user_home_access_mode: ACCESS_MODES[0].to_owned(),
            user_home_size: None,
            user_home_storage_class: None,
            ready_timeout: Duration::from_secs(180),
            poll_interval: Duration::from_secs(1),
            confinement: Confinement::default(),
            transfer: None,
        }
    }
}

/// The access modes a user's home claim may have; the first is the default.
pub const ACCESS_MODES: [&str; 3] = ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"];

/// Why no client for the cluster could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read kubeconfig {path}")]
    ReadKubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("unusable kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: KubeconfigError,
    },
    #[error("no Kubernetes configuration (in-cluster service account or kubeconfig)")]
    NoConfig(#[source] InferConfigError),
    #[error("cannot build the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// A client for the cluster: from the given kubeconfig file, or else inferred (`KUBECONFIG`,
/// `~/.kube/config`, then the in-cluster service account).
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, ConnectError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ConnectError::ReadKubeconfig {
                    path: path.to_owned(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| ConnectError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(ConnectError::NoConfig)?,
    };
    Client::try_from(config).map_err(ConnectError::Client)
}

/// Runs sessions as Deployments in one namespace.
pub struct KubernetesRuntime {
    config: KubernetesRuntimeConfig,
    deployments: Api<Deployment>,
    services: Api<Service>,
    claims: Api<PersistentVolumeClaim>,
    pods: Api<Pod>,
    secrets: Api<Secret>,
}

impl std::fmt::Debug for KubernetesRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesRuntime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A Kubernetes API failure as a runtime error; an error status from the API server is kept
/// as the source (its message and reason say why), anything else as kube's error.
fn api_error(what: &str, e: kube::Error) -> RuntimeError {
    let what = what.to_owned();
    match e {
        kube::Error::Api(source) => RuntimeError::KubernetesApi {
            what,
            code: source.code,
            source,
        },
        source => RuntimeError::Kubernetes { what, source },
    }
}

/// A deletion's outcome: done, or nothing to delete.
fn gone<T>(deleted: Result<T, kube::Error>, what: &str) -> Result<(), RuntimeError> {
    match deleted {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(e) => Err(api_error(what, e)),
    }
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_already_exists())
}

/// The VNC port a session's Deployment declares.
fn vnc_port_of(deployment: &Deployment) -> u16 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(objects::VNC_PORT_NAME))
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(DEFAULT_VNC_PORT)
}

impl KubernetesRuntime {
    /// Starts the session (mounting the home claim of `user_home`'s user, when given), or
    /// returns it unchanged if it exists.
    async fn start_session(
        &self,
        session_id: Uuid,
        template: &Template,
        user_home: Option<Uuid>,
    ) -> Result<SessionInfo, RuntimeError> {
        let desired = objects::deployment(session_id, template, &self.config, user_home)?;
        let name = session_name(session_id);
        let root = match self
            .deployments
            .get_opt(&name)
            .await
            .map_err(|e| api_error("reading the session's deployment", e))?
        {
            Some(d) if !self.is_ours(&d) => {
                return Err(RuntimeError::StartFailed(format!(
                    "deployment {name} exists but belongs to another agent"
                )));
            }
            Some(d) if observe::is_deleting(&d) => {
                return Err(RuntimeError::StartFailed(format!(
                    "deployment {name} of a previous run is still being deleted"
                )));
            }
            Some(d) => d,
            None => {
                if self.config.transfer.is_some() {
                    self.prepare_transfer_secret(session_id).await?;
                }
                match self
                    .deployments
                    .create(&PostParams::default(), &desired)
                    .await
                {
                    Ok(d) => d,
                    Err(e) if already_exists(&e) => self
                        .deployments
                        .get(&name)
                        .await
                        .map_err(|e| api_error("reading the session's deployment", e))?,
                    Err(e) => {
                        let err = api_error("creating the session's deployment", e);
                        if let Err(cleanup) = self.delete_root(session_id).await {
                            tracing::warn!(%session_id, error = %Chain(&cleanup), "could not remove a failed start");
                        }
                        return Err(err);
                    }
                }
            }
        };
        match self.finish_start(session_id, template, &root).await {
            Ok(info) => {
                tracing::info!(%session_id, deployment = %name, state = info.state.as_str(), "session started");
                Ok(info)
            }
            Err(e) => {
                // Leave nothing behind: the session is failed either way (a child that could
                // not be made, or a pod that never became Ready).
                if let Err(cleanup) = self.delete_root(session_id).await {
                    tracing::warn!(%session_id, error = %Chain(&cleanup), "could not remove a failed start");
                }
                Err(e)
            }
        }
    }

    /// The sessions of this namespace (any agent's) whose Deployment mounts the home of
    /// `user_id` and is not being deleted.
    async fn user_home_sessions(&self, user_id: Uuid) -> Result<Vec<Uuid>, RuntimeError> {
        let lp = ListParams::default().labels(&objects::user_home_selector(user_id));
        let list = self
            .deployments
            .list(&lp)
            .await
            .map_err(|e| api_error("listing the sessions of a user home", e))?;
        Ok(list
            .items
            .iter()
            .filter(|d| !observe::is_deleting(d))
            .filter_map(|d| objects::session_id_of(&d.metadata))
            .collect())
    }

    /// Creates the home claim of `user_id` unless it exists. One of that name that is not
    /// that user's home, or that is being deleted, is refused rather than mounted.
    async fn ensure_user_home(&self, user_id: Uuid) -> Result<(), RuntimeError> {
        let claim = objects::user_home_claim(user_id, &self.config);
        let name = objects::user_home_claim_name(user_id);
        match self.claims.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                tracing::info!(%user_id, claim = %name, "user home volume claim created");
                return Ok(());
            }
            Err(e) if already_exists(&e) => {}
            Err(e) => return Err(api_error("creating the user's home volume claim", e)),
        }
        let existing = self
            .claims
            .get_opt(&name)
            .await
            .map_err(|e| api_error("reading the user's home volume claim", e))?;
        match existing {
            Some(c) if objects::user_home_of(&c.metadata) != Some(user_id) => {
                Err(RuntimeError::StartFailed(format!(
                    "a volume claim {name} exists but is not StreamSpace's home of user {user_id}"
                )))
            }
            Some(c) if c.metadata.deletion_timestamp.is_some() => Err(RuntimeError::StartFailed(
                format!("the home of user {user_id} (volume claim {name}) is being deleted"),
            )),
            Some(_) => Ok(()),
            // Deleted in between: make it again.
            None => self
                .claims
                .create(&PostParams::default(), &claim)
                .await
                .map(drop)
                .map_err(|e| api_error("creating the user's home volume claim", e)),
        }
    }

    /// A runtime using `client` (a real cluster, or a mock service in tests).
    pub fn new(client: Client, config: KubernetesRuntimeConfig) -> Result<Self, RuntimeError> {
        objects::check_label_value("agent id", &config.agent_id)?;
        if config.namespace.trim().is_empty() {
            return Err(RuntimeError::InvalidConfig(
                "the Kubernetes namespace is empty".to_owned(),
            ));
        }
        if !ACCESS_MODES.contains(&config.user_home_access_mode.as_str()) {
            return Err(RuntimeError::InvalidConfig(format!(
                "the access mode {:?} of user homes is none of {}",
                config.user_home_access_mode,
                ACCESS_MODES.join(", ")
            )));
        }
        let ns = config.namespace.as_str();
        Ok(Self {
            deployments: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            claims: Api::namespaced(client.clone(), ns),
            secrets: Api::namespaced(client.clone(), ns),
            pods: Api::namespaced(client, ns),
            config,
        })
    }

    pub fn config(&self) -> &KubernetesRuntimeConfig {
        &self.config
    }

    fn is_ours(&self, deployment: &Deployment) -> bool {
        deployment
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_AGENT))
            == Some(&self.config.agent_id)
    }

    /// The session's Deployment if it exists, belongs to this agent and is not being deleted.
    async fn root(&self, session_id: Uuid) -> Result<Option<Deployment>, RuntimeError> {
        let found = self
            .deployments
            .get_opt(&session_name(session_id))
            .await
            .map_err(|e| api_error("reading the session's deployment", e))?;
        Ok(found.filter(|d| self.is_ours(d) && !observe::is_deleting(d)))
    }

    async fn session_pods(&self, session_id: Uuid) -> Result<Vec<Pod>, RuntimeError> {
        let lp = ListParams::default().labels(&objects::session_selector(session_id));
        let list = self
            .pods
            .list(&lp)
            .await
            .map_err(|e| api_error("listing the session's pods", e))?;
        Ok(list.items)
    }

    fn info(&self, session_id: Uuid, deployment: &Deployment, seen: Observed) -> SessionInfo {
        let (state, message) = match seen {
            Observed::Hibernated => (SessionState::Hibernated, None),
            Observed::Ready => (SessionState::Running, None),
            // Not a failure: a pod being (re)scheduled after its node went away comes back.
            Observed::NotReady => (
                SessionState::Running,
                Some("waiting for the session's pod to become Ready".to_owned()),
            ),
            Observed::Failed(why) => (SessionState::Failed, Some(why)),
        };
        SessionInfo {
            session_id,
            state,
            vnc_address: objects::vnc_address(session_id, vnc_port_of(deployment), &self.config),
            message,
        }
    }

    /// Creates `object` unless it exists already, as a retried start finds it. An existing
    /// object owned by another Deployment than the object's own owner is a leftover of a
    /// previous run of the session that the garbage collector has not removed yet: adopting it
    /// would lose it to the collector a moment later, so the start fails instead.
    async fn ensure<K>(&self, api: &Api<K>, object: &K, what: &str) -> Result<(), RuntimeError>
    where
        K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        match api.create(&PostParams::default(), object).await {
            Ok(_) => Ok(()),
            Err(e) if already_exists(&e) => {
                let name = object.meta().name.clone().unwrap_or_default();
                let existing = api
                    .get_opt(&name)
                    .await
                    .map_err(|e| api_error(&format!("reading the session's {what}"), e))?;
                let owner = |meta: &kube::api::ObjectMeta| {
                    meta.owner_references
                        .iter()
                        .flatten()
                        .find(|r| r.controller == Some(true))
                        .map(|r| r.uid.clone())
                };
                match existing {
                    Some(found) if owner(found.meta()) != owner(object.meta()) => {
                        Err(RuntimeError::StartFailed(format!(
                            "the session's {what} {name} from a previous run is still being                              removed by the cluster; start the session again shortly"
                        )))
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => Err(api_error(&format!("creating the session's {what}"), e)),
        }
    }

    /// Makes the session's transfer Secret, with a token of its own, before the Deployment whose
    /// sidecar reads it (a pod started without it would fail at once). One left by an
    /// interrupted start is kept; one still owned by a previous run's Deployment fails the
    /// start like the other children do (see [`Self::ensure`]).
    async fn prepare_transfer_secret(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        let secret = objects::transfer_secret(session_id, &self.config, None, &new_token());
        match self.secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(e) if already_exists(&e) => {
                let name = session_name(session_id);
                let existing = self
                    .secrets
                    .get_opt(&name)
                    .await
                    .map_err(|e| api_error("reading the session's transfer secret", e))?;
                let owned = existing
                    .as_ref()
                    .and_then(|s| s.metadata.owner_references.as_ref())
                    .is_some_and(|refs| !refs.is_empty());
                if owned {
                    return Err(RuntimeError::StartFailed(format!(
                        "the session's transfer secret {name} from a previous run is still being \
                         removed by the cluster; start the session again shortly"
                    )));
                }
                Ok(())
            }
            Err(e) => Err(api_error("creating the session's transfer secret", e)),
        }
    }

    /// Makes the Deployment the owner of the session's transfer Secret, so that the garbage
    /// collector removes it with the session; makes the Secret if it is missing.
    async fn own_transfer_secret(
        &self,
        session_id: Uuid,
        owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<(), RuntimeError> {
        let name = session_name(session_id);
        let patch = serde_json::json!({ "metadata": { "ownerReferences": [owner.clone()] } });
        match self
            .secrets
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => {
                let secret =
                    objects::transfer_secret(session_id, &self.config, Some(owner), &new_token());
                self.ensure(&self.secrets, &secret, "transfer secret").await
            }
            Err(e) => Err(api_error(
                "giving the session's transfer secret its owner",
                e,
            )),
        }
    }

    /// The rest of a start once the root exists: its children, then readiness.
    async fn finish_start(
        &self,
        session_id: Uuid,
        template: &Template,
        root: &Deployment,
    ) -> Result<SessionInfo, RuntimeError> {
        let name = session_name(session_id);
        let owner = objects::owner_reference(root).ok_or_else(|| {
            RuntimeError::Platform(format!("deployment {name} came back without a uid"))
        })?;
        // Created after the root (they need its uid) and on every start, so a start retried
        // after a crash between the two completes the set.
        let service = objects::service(session_id, template, &self.config, owner.clone());
        self.ensure(&self.services, &service, "service").await?;
        if self.config.transfer.is_some() && objects::has_transfer_sidecar(root) {
            self.own_transfer_secret(session_id, owner.clone()).await?;
        }
        if let Some(claim) = objects::home_claim(session_id, template, &self.config, owner) {
            self.ensure(&self.claims, &claim, "home volume claim")
                .await?;
        }
        if observe::replicas(root) == 0 {
            return Ok(self.info(session_id, root, Observed::Hibernated));
        }
        self.wait_ready(session_id).await
    }

    /// Sets the replica count with a merge patch of the Deployment itself (not its `scale`
    /// subresource: the agent's Role then needs no `deployments/scale` permission).
    async fn scale(&self, session_id: Uuid, replicas: i32) -> Result<(), RuntimeError> {
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.deployments
            .patch(
                &session_name(session_id),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(drop)
            .map_err(|e| api_error("scaling the session's deployment", e))
    }

    /// Polls until a pod of the session is Ready. An API failure is returned as it is; the
    /// reason the session will not become Ready as [`RuntimeError::StartFailed`].
    async fn wait_ready(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let deadline = Instant::now() + self.config.ready_timeout;
        let not_ready = |why: String| Err(RuntimeError::StartFailed(why));
        loop {
            let Some(root) = self.root(session_id).await? else {
                return not_ready("the session's deployment disappeared".to_owned());
            };
            let pods = self.session_pods(session_id).await?;
            match observe::observe(&root, &pods) {
                Observed::Ready => return Ok(self.info(session_id, &root, Observed::Ready)),
                Observed::Failed(why) => return not_ready(why),
                Observed::Hibernated => {
                    return not_ready("the session was scaled to zero".to_owned());
                }
                Observed::NotReady if Instant::now() >= deadline => {
                    return not_ready(format!(
                        "the session's pod was not Ready within {}s",
                        self.config.ready_timeout.as_secs()
                    ));
                }
                Observed::NotReady => tokio::time::sleep(self.config.poll_interval).await,
            }
        }
    }

    async fn delete_root(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        let name = session_name(session_id);
        // Background propagation: the Deployment goes at once, the garbage collector removes
        // its ReplicaSet, pod, Service, owned home claim and transfer Secret.
        let deleted = self
            .deployments
            .delete(&name, &DeleteParams::background())
            .await;
        gone(deleted, "deleting the session's deployment")?;
        // A start cut short before the Deployment owned it leaves the Secret to no one.
        if self.config.transfer.is_some() {
            let deleted = self
                .secrets
                .delete(&name, &DeleteParams::background())
                .await;
            gone(deleted, "deleting the session's transfer secret")?;
        }
        Ok(())
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn platform(&self) -> &'static str {
        "kubernetes"
    }

    fn user_homes(&self) -> bool {
        true
    }

    async fn start(
        &self,
        session_id: Uuid,
        template: &Template,
    ) -> Result<SessionInfo, RuntimeError> {
        if template.persistent_home.is_user() {
            return Err(super::no_user_homes(self.platform(), template));
        }
        self.start_session(session_id, template, None).await
    }

    async fn start_with_user_home(
        &self,
        session_id: Uuid,
        template: &Template,
        user_id: Uuid,
    ) -> Result<SessionInfo, RuntimeError> {
        if self.root(session_id).await?.is_none() {
            if self.config.user_home_access_mode != "ReadWriteMany" {
                let others: Vec<String> = self
                    .user_home_sessions(user_id)
                    .await?
                    .into_iter()
                    .filter(|id| *id != session_id)
                    .map(|id| id.to_string())
                    .collect();
                if !others.is_empty() {
                    return Err(RuntimeError::HomeInUse(format!(
                        "the home of user {user_id} is a {} volume already mounted by session {}; \
                         stop it first (or give the agent a ReadWriteMany access mode for user \
                         homes on storage that supports it)",
                        self.config.user_home_access_mode,
                        others.join(", ")
                    )));
                }
            }
            self.ensure_user_home(user_id).await?;
        }
        self.start_session(session_id, template, Some(user_id))
            .await
    }

    async fn delete_user_home(&self, user_id: Uuid) -> Result<(), RuntimeError> {
        let users = self.user_home_sessions(user_id).await?;
        if !users.is_empty() {
            let users: Vec<String> = users.iter().map(|id| format!("session {id}")).collect();
            return Err(RuntimeError::HomeInUse(format!(
                "the home of user {user_id} is in use by {}; stop those sessions first",
                users.join(", ")
            )));
        }
        let name = objects::user_home_claim_name(user_id);
        let claim = self
            .claims
            .get_opt(&name)
            .await
            .map_err(|e| api_error("reading the user's home volume claim", e))?;
        // Absent, or a claim of that name StreamSpace did not make: nothing of ours to remove.
        if claim.is_none_or(|c| objects::user_home_of(&c.metadata) != Some(user_id)) {
            return Ok(());
        }
        match self.claims.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(%user_id, claim = %name, "user home volume claim deleted");
                Ok(())
            }
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(api_error("deleting the user's home volume claim", e)),
        }
    }

    async fn stop(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        self.delete_root(session_id).await?;
        tracing::info!(%session_id, "session stopped");
        Ok(())
    }

    async fn hibernate(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let root = self
            .root(session_id)
            .await?
            .ok_or(RuntimeError::UnknownSession(session_id))?;
        if observe::replicas(&root) != 0 {
            self.scale(session_id, 0).await?;
        }
        Ok(self.info(session_id, &root, Observed::Hibernated))
    }

    async fn wake(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let root = self
            .root(session_id)
            .await?
            .ok_or(RuntimeError::UnknownSession(session_id))?;
        if observe::replicas(&root) == 0 {
            self.scale(session_id, 1).await?;
        }
        self.wait_ready(session_id).await.map_err(|e| match e {
            RuntimeError::StartFailed(message) => RuntimeError::SessionFailed {
                session_id,
                message,
            },
            api => api,
        })
    }

    async fn status(&self, session_id: Uuid) -> Result<Option<SessionInfo>, RuntimeError> {
        let Some(root) = self.root(session_id).await? else {
            return Ok(None);
        };
        let pods = self.session_pods(session_id).await?;
        let seen = observe::observe(&root, &pods);
        Ok(Some(self.info(session_id, &root, seen)))
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        let lp = ListParams::default().labels(&objects::agent_selector(&self.config.agent_id));
        let deployments = self
            .deployments
            .list(&lp)
            .await
            .map_err(|e| api_error("listing the agent's deployments", e))?;
        let pods = self
            .pods
            .list(&lp)
            .await
            .map_err(|e| api_error("listing the agent's pods", e))?;
        let mut by_session: HashMap<Uuid, Vec<Pod>> = HashMap::new();
        for pod in pods.items {
            if let Some(id) = objects::session_id_of(&pod.metadata) {
                by_session.entry(id).or_default().push(pod);
            }
        }
        let mut sessions = Vec::new();
        for d in deployments.items {
            if observe::is_deleting(&d) {
                continue;
            }
            let Some(id) = objects::session_id_of(&d.metadata) else {
                continue;
            };
            let pods = by_session.remove(&id).unwrap_or_default();
            let seen = observe::observe(&d, &pods);
            sessions.push(self.info(id, &d, seen));
        }
        sessions.sort_by_key(|s| s.session_id);
        Ok(sessions)
    }

    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        let sessions = self.list().await?;
        for s in &sessions {
            tracing::info!(
                agent_id = %self.config.agent_id,
                session_id = %s.session_id,
                state = s.state.as_str(),
                message = ?s.message,
                "adopted a session from the cluster"
            );
        }
        Ok(sessions)
    }

    async fn transfer_folder(
        &self,
        session_id: Uuid,
    ) -> Result<Box<dyn crate::transfer::TransferFolder>, RuntimeError> {
        let Some(sidecar) = &self.config.transfer else {
            return Err(RuntimeError::TransferUnsupported(
                "this agent runs Kubernetes sessions without the transfer sidecar \
                 (--transfer-sidecar-image)"
                    .to_owned(),
            ));
        };
        let root = self
            .root(session_id)
            .await?
            .ok_or(RuntimeError::UnknownSession(session_id))?;
        if !objects::has_transfer_sidecar(&root) {
            return Err(RuntimeError::TransferUnsupported(
                "the session was started before its agent ran sessions with the transfer \
                 sidecar; start it again to carry files"
                    .to_owned(),
            ));
        }
        let pods = self.session_pods(session_id).await?;
        let not_running = |message: &str| RuntimeError::SessionFailed {
            session_id,
            message: message.to_owned(),
        };
        // The pod's own address: the sidecar's port is not on the Service, and the agent's
        // pods are the only ones the sessions' network policy lets in.
        let pod_ip = match observe::observe(&root, &pods) {
            Observed::Ready => pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && observe::pod_ready(p))
                .find_map(|p| p.status.as_ref()?.pod_ip.clone())
                .ok_or_else(|| not_running("the session's pod has no address yet"))?,
            Observed::Hibernated => return Err(not_running("the session is hibernated")),
            Observed::NotReady => return Err(not_running("the session's pod is not Ready")),
            Observed::Failed(why) => return Err(not_running(&why)),
        };
        let secret = self
            .secrets
            .get_opt(&session_name(session_id))
            .await
            .map_err(|e| api_error("reading the session's transfer secret", e))?
            .filter(|s| objects::session_id_of(&s.metadata) == Some(session_id))
            .ok_or_else(|| {
                RuntimeError::Platform(format!(
                    "the session's transfer secret {} is missing",
                    session_name(session_id)
                ))
            })?;
        let token = objects::token_of(&secret).ok_or_else(|| {
            RuntimeError::Platform(format!(
                "the session's transfer secret {} holds no token",
                session_name(session_id)
            ))
        })?;
        let ip: std::net::IpAddr = pod_ip.parse().map_err(|_| {
            RuntimeError::Platform(format!(
                "the session's pod has an unusable address {pod_ip:?}"
            ))
        })?;
        let address = std::net::SocketAddr::new(ip, sidecar.port).to_string();
        Ok(Box::new(crate::transfer::remote::RemoteFolder::new(
            address, token,
        )))
    }
}

/// A fresh transfer token: 32 random bytes, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
