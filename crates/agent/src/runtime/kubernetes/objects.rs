//! The Kubernetes objects of one session, built as typed k8s-openapi values (pure functions,
//! no API calls), and the names and labels that tie them together.
//!
//! Names come only from the session id (a UUID, lowercase hex and dashes, prefixed with a
//! letter), so they are valid DNS-1123 labels whatever the user typed; the agent id appears
//! only as a label value, checked by [`check_label_value`] when the runtime is built.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use streamspace_proto::api::{HomePolicy, Template};
use uuid::Uuid;

use super::{KubernetesRuntimeConfig, TransferSidecar};
use crate::runtime::RuntimeError;
use crate::runtime::confinement::SCRATCH_DIRS;

/// `app.kubernetes.io/managed-by` value on everything the agent creates.
pub const MANAGED_BY: &str = "streamspace";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_SESSION: &str = "streamspace.io/session-id";
pub const LABEL_AGENT: &str = "streamspace.io/agent-id";
/// On a user's home claim, and on the Deployments that mount it: whose home it is.
pub const LABEL_USER_HOME: &str = "streamspace.io/user-home";
/// The container that runs the session inside its pod.
pub const CONTAINER: &str = "session";
/// The named port of the session's VNC server (container and Service).
pub const VNC_PORT_NAME: &str = "vnc";
const HOME_VOLUME: &str = "home";
/// The transfer sidecar's container, and its named port (container only: the agent dials the
/// pod's address, not the Service).
pub const TRANSFER_CONTAINER: &str = "transfer";
pub const TRANSFER_PORT_NAME: &str = "transfer";
/// Where the sidecar sees the session's home (or, without a home volume, only its transfer
/// folder, an `emptyDir` shared with the session's container).
pub const SIDECAR_HOME: &str = "/streamspace/home";
/// The key of the transfer token in the session's Secret.
pub const TOKEN_KEY: &str = "token";
/// The environment variable the sidecar reads its token from.
pub const TOKEN_ENV: &str = "STREAMSPACE_TRANSFER_TOKEN";
const TRANSFER_VOLUME: &str = "transfers";
/// Prefix of the `emptyDir` volumes of a read-only session's scratch directories.
const SCRATCH_VOLUME: &str = "scratch";

/// The Deployment and the Service of a session share this name (`ss-<uuid>`, 39 characters).
pub fn session_name(session_id: Uuid) -> String {
    format!("ss-{}", session_id.hyphenated())
}

/// The home volume claim of a session (`ss-<uuid>-home`).
pub fn home_claim_name(session_id: Uuid) -> String {
    format!("{}-home", session_name(session_id))
}

/// The home volume claim of the user `user_id` (`ss-home-<uuid>`): named from the id, never
/// from a user name.
pub fn user_home_claim_name(user_id: Uuid) -> String {
    format!("ss-home-{}", user_id.hyphenated())
}

/// Selects the home claim of one user, and the Deployments that mount it.
pub fn user_home_selector(user_id: Uuid) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_USER_HOME}={user_id}")
}

/// The user whose home an object is (or mounts), from its labels.
pub fn user_home_of(meta: &ObjectMeta) -> Option<Uuid> {
    meta.labels.as_ref()?.get(LABEL_USER_HOME)?.parse().ok()
}

/// Refuses a string Kubernetes would not accept as a label value (at most 63 characters of
/// `[A-Za-z0-9._-]`, starting and ending alphanumeric).
pub fn check_label_value(what: &str, value: &str) -> Result<(), RuntimeError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidConfig(format!(
            "{what} {value:?} cannot be a Kubernetes label value (at most 63 letters, digits, \
             '-', '_' or '.', starting and ending with a letter or digit)"
        )))
    }
}

/// Selects every object of one agent.
pub fn agent_selector(agent_id: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_AGENT}={agent_id}")
}

/// Selects the pods (and every other object) of one session.
pub fn session_selector(session_id: Uuid) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_SESSION}={session_id}")
}

/// The labels every object of a session carries.
pub fn session_labels(session_id: Uuid, agent_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_COMPONENT.to_owned(), "session".to_owned()),
        (LABEL_SESSION.to_owned(), session_id.to_string()),
        (LABEL_AGENT.to_owned(), agent_id.to_owned()),
    ])
}

/// The labels a session's pods are selected by (a subset of [`session_labels`]).
fn pod_selector_labels(session_id: Uuid) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_SESSION.to_owned(), session_id.to_string()),
    ])
}

/// The session id a listed object carries, if it is a well-formed StreamSpace object.
pub fn session_id_of(meta: &ObjectMeta) -> Option<Uuid> {
    let labels = meta.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    labels.get(LABEL_SESSION)?.parse().ok()
}

/// The image a template runs, or why it cannot run on Kubernetes.
fn image_of(template: &Template) -> Result<&str, RuntimeError> {
    match template.image.as_deref().map(str::trim) {
        Some(image) if !image.is_empty() => Ok(image),
        _ => Err(RuntimeError::InvalidTemplate(format!(
            "template {:?} has no image; the kubernetes runtime runs container images",
            template.name
        ))),
    }
}

fn resources_of(template: &Template) -> Option<ResourceRequirements> {
    let mut amounts = BTreeMap::new();
    if let Some(cpu) = template.resources.cpu_millis {
        amounts.insert("cpu".to_owned(), Quantity(format!("{cpu}m")));
    }
    if let Some(mib) = template.resources.memory_mib {
        amounts.insert("memory".to_owned(), Quantity(format!("{mib}Mi")));
    }
    // Requests equal limits: a session gets what its template promises (Guaranteed QoS when
    // both are set), and the scheduler never over-commits a node with desktops.
    (!amounts.is_empty()).then(|| ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..Default::default()
    })
}

/// The session's root object: a Deployment of one replica (zero while hibernated), mounting
/// the home claim of `user_home`'s user when given (labelled with that user, so that the
/// home's other sessions are found).
pub fn deployment(
    session_id: Uuid,
    template: &Template,
    config: &KubernetesRuntimeConfig,
    user_home: Option<Uuid>,
) -> Result<Deployment, RuntimeError> {
    let image = image_of(template)?;
    let name = session_name(session_id);
    let labels = session_labels(session_id, &config.agent_id);
    let mut root_labels = labels.clone();
    if let Some(user_id) = user_home {
        root_labels.insert(LABEL_USER_HOME.to_owned(), user_id.to_string());
    }
    let port = i32::from(template.ports.vnc);
    let env: Vec<EnvVar> = template
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    let has_home = template.persistent_home.has_volume();
    let (mut mounts, mut volumes) = (Vec::new(), Vec::new());
    if has_home {
        mounts.push(VolumeMount {
            name: HOME_VOLUME.to_owned(),
            mount_path: config.home_mount_path.clone(),
            ..Default::default()
        });
        volumes.push(Volume {
            name: HOME_VOLUME.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: match user_home {
                    Some(user_id) => user_home_claim_name(user_id),
                    None => home_claim_name(session_id),
                },
                read_only: None,
            }),
            ..Default::default()
        });
    }
    let read_only = config.confinement.read_only_root;
    if read_only {
        let mut scratch: Vec<&str> = SCRATCH_DIRS.to_vec();
        if !has_home {
            scratch.push(&config.home_mount_path);
        }
        for (i, dir) in scratch.into_iter().enumerate() {
            let name = format!("{SCRATCH_VOLUME}-{i}");
            mounts.push(VolumeMount {
                name: name.clone(),
                mount_path: dir.to_owned(),
                ..Default::default()
            });
            volumes.push(Volume {
                name,
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
        }
    }
    // Without a home volume, the transfer folder is a volume of its own that the sidecar
    // shares; with one, the sidecar mounts the home.
    if config.transfer.is_some() && !has_home {
        mounts.push(VolumeMount {
            name: TRANSFER_VOLUME.to_owned(),
            mount_path: format!(
                "{}/{}",
                config.home_mount_path.trim_end_matches('/'),
                streamspace_proto::transfer::TRANSFER_FOLDER
            ),
            ..Default::default()
        });
        volumes.push(Volume {
            name: TRANSFER_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
    }
    let sidecar = config
        .transfer
        .as_ref()
        .map(|t| transfer_sidecar(session_id, t, has_home));
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        // The template's command replaces the image's CMD (Docker's meaning), not its entrypoint.
        args: (!template.command.is_empty()).then(|| template.command.clone()),
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![ContainerPort {
            name: Some(VNC_PORT_NAME.to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String(VNC_PORT_NAME.to_owned()),
                ..Default::default()
            }),
            period_seconds: Some(2),
            ..Default::default()
        }),
        resources: resources_of(template),
        // A non-root desktop needs no capability at all.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            read_only_root_filesystem: read_only.then_some(true),
            ..Default::default()
        }),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: std::iter::once(container).chain(sidecar).collect(),
        // A desktop has no business talking to the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        // The image must name a non-root user (numerically, for the kubelet to check it).
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            fs_group: config.confinement.fs_group.filter(|_| has_home),
            fs_group_change_policy: (config.confinement.fs_group.is_some() && has_home)
                .then(|| "OnRootMismatch".to_owned()),
            ..Default::default()
        }),
        volumes: (!volumes.is_empty()).then_some(volumes),
        ..Default::default()
    };
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(config.namespace.clone()),
            labels: Some(root_labels),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(pod_selector_labels(session_id)),
                ..Default::default()
            },
            // Never two pods of one session (they would share the home volume and the user).
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// The transfer sidecar of a session's pod: `streamspace transfer-sidecar` serving the
/// transfer folder on the pod's network to whoever holds the session's token (read from the
/// session's Secret), as the session images' user, with no capability and a read-only root.
fn transfer_sidecar(session_id: Uuid, sidecar: &TransferSidecar, has_home: bool) -> Container {
    let mount = if has_home {
        VolumeMount {
            name: HOME_VOLUME.to_owned(),
            mount_path: SIDECAR_HOME.to_owned(),
            ..Default::default()
        }
    } else {
        VolumeMount {
            name: TRANSFER_VOLUME.to_owned(),
            mount_path: format!(
                "{SIDECAR_HOME}/{}",
                streamspace_proto::transfer::TRANSFER_FOLDER
            ),
            ..Default::default()
        }
    };
    let quantity = |q: &str| Quantity(q.to_owned());
    Container {
        name: TRANSFER_CONTAINER.to_owned(),
        image: Some(sidecar.image.clone()),
        args: Some(vec![
            "transfer-sidecar".to_owned(),
            "--listen".to_owned(),
            format!("0.0.0.0:{}", sidecar.port),
            "--home".to_owned(),
            SIDECAR_HOME.to_owned(),
        ]),
        env: Some(vec![EnvVar {
            name: TOKEN_ENV.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: session_name(session_id),
                    key: TOKEN_KEY.to_owned(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some(TRANSFER_PORT_NAME.to_owned()),
            container_port: i32::from(sidecar.port),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String(TRANSFER_PORT_NAME.to_owned()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity("10m")),
                ("memory".to_owned(), quantity("16Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), quantity("128Mi"))])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            read_only_root_filesystem: Some(true),
            run_as_user: Some(sidecar.uid),
            run_as_group: Some(sidecar.uid),
            run_as_non_root: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(vec![mount]),
        ..Default::default()
    }
}

/// The Secret holding the session's transfer token (the sidecar reads it as an environment
/// variable; the agent reads it back when it carries a transfer). It is made before the
/// Deployment, which the pod's sidecar could not start without it, so without an owner; the
/// start then makes the Deployment its owner.
pub fn transfer_secret(
    session_id: Uuid,
    config: &KubernetesRuntimeConfig,
    owner: Option<OwnerReference>,
    token: &str,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(session_name(session_id)),
            namespace: Some(config.namespace.clone()),
            labels: Some(session_labels(session_id, &config.agent_id)),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// Whether the Deployment's pods run the transfer sidecar (not those started before the agent
/// ran sessions with one).
pub fn has_transfer_sidecar(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|p| p.containers.iter().any(|c| c.name == TRANSFER_CONTAINER))
}

/// The transfer token in a session's Secret, if it holds one.
pub fn token_of(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(TOKEN_KEY)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|t| !t.is_empty())
}

/// Makes `root` (the created Deployment) the controlling owner, so that deleting it deletes
/// the object. `None` if the Deployment has no uid yet (it always has one once created).
pub fn owner_reference(root: &Deployment) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "Deployment".to_owned(),
        name: root.metadata.name.clone()?,
        uid: root.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// The ClusterIP Service in front of the session's VNC port.
pub fn service(
    session_id: Uuid,
    template: &Template,
    config: &KubernetesRuntimeConfig,
    owner: OwnerReference,
) -> Service {
    let port = i32::from(template.ports.vnc);
    Service {
        metadata: ObjectMeta {
            name: Some(session_name(session_id)),
            namespace: Some(config.namespace.clone()),
            labels: Some(session_labels(session_id, &config.agent_id)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(pod_selector_labels(session_id)),
            ports: Some(vec![ServicePort {
                name: Some(VNC_PORT_NAME.to_owned()),
                port,
                target_port: Some(IntOrString::String(VNC_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The session's own home volume claim, when the template asks for one. With
/// [`HomePolicy::Delete`] it is owned by the Deployment (so stopping the session deletes it);
/// with [`HomePolicy::Retain`] it has no owner and outlives the session, still labelled for the
/// operator to find. [`HomePolicy::User`] sessions mount their user's claim instead
/// ([`user_home_claim`]).
pub fn home_claim(
    session_id: Uuid,
    template: &Template,
    config: &KubernetesRuntimeConfig,
    owner: OwnerReference,
) -> Option<PersistentVolumeClaim> {
    let owner_references = match template.persistent_home {
        HomePolicy::None | HomePolicy::User => return None,
        HomePolicy::Delete => Some(vec![owner]),
        HomePolicy::Retain => None,
    };
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(home_claim_name(session_id)),
            namespace: Some(config.namespace.clone()),
            labels: Some(session_labels(session_id, &config.agent_id)),
            owner_references,
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: config.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(config.home_size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// The home volume claim of the user `user_id`: owned by nothing (it outlives every session),
/// labelled with the user and the agent that made it, with the user homes' access mode,
/// size and storage class.
pub fn user_home_claim(user_id: Uuid, config: &KubernetesRuntimeConfig) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(user_home_claim_name(user_id)),
            namespace: Some(config.namespace.clone()),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
                (LABEL_COMPONENT.to_owned(), "user-home".to_owned()),
                (LABEL_USER_HOME.to_owned(), user_id.to_string()),
                (LABEL_AGENT.to_owned(), config.agent_id.clone()),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![config.user_home_access_mode.clone()]),
            storage_class_name: config
                .user_home_storage_class
                .clone()
                .or_else(|| config.storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(
                        config
                            .user_home_size
                            .clone()
                            .unwrap_or_else(|| config.home_size.clone()),
                    ),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Where a session's VNC server is reached from inside the cluster: the Service's DNS name.
pub fn vnc_address(session_id: Uuid, port: u16, config: &KubernetesRuntimeConfig) -> String {
    let host = format!(
        "{}.{}.svc.{}",
        session_name(session_id),
        config.namespace,
        config.cluster_domain
    );
    crate::runtime::vnc::address(&host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        let id = Uuid::now_v7();
        let name = session_name(id);
        assert!(name.len() <= 63 && home_claim_name(id).len() <= 63);
        assert!(user_home_claim_name(id).len() <= 63);
        assert!(name.starts_with("ss-"));
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }

    #[test]
    fn label_values_are_checked() {
        assert!(check_label_value("agent id", "agent-1.eu_west").is_ok());
        for bad in ["", "-a", "a-", "a b", "agent/1", &"a".repeat(64)] {
            assert!(check_label_value("agent id", bad).is_err(), "{bad:?}");
        }
    }
}
