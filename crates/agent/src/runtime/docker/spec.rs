//! What the docker runtime asks the engine for: names and labels derived from ids (never from
//! user input), and the container and volume a session's template describes.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, VolumeCreateRequest,
};
use streamspace_proto::api::{HomePolicy, Template};
use uuid::Uuid;

use crate::runtime::confinement::{Confinement, DESKTOP_CAPABILITIES, SCRATCH_DIRS};

/// The session a container or volume belongs to.
pub const SESSION_LABEL: &str = "io.streamspace.session";
/// The agent that owns it; reconciliation only ever touches its own agent's objects.
pub const AGENT_LABEL: &str = "io.streamspace.agent";
/// The template's home policy, so that stop knows what to do with the volume.
pub const HOME_LABEL: &str = "io.streamspace.home";
/// The VNC port inside the container, to find its published host port again.
pub const VNC_PORT_LABEL: &str = "io.streamspace.vnc-port";
/// The template the session was started from (informational).
pub const TEMPLATE_LABEL: &str = "io.streamspace.template";
/// The user whose home a volume is, and on a container the user whose home it mounts
/// (`persistent_home: user`).
pub const USER_HOME_LABEL: &str = "io.streamspace.user-home";

/// Where the home volume is mounted in the container.
pub const HOME_MOUNT: &str = "/home";

pub fn container_name(session_id: Uuid) -> String {
    format!("streamspace-{session_id}")
}

pub fn volume_name(session_id: Uuid) -> String {
    format!("streamspace-home-{session_id}")
}

/// The home volume of the user `user_id`, named from the id (never from a user name).
pub fn user_volume_name(user_id: Uuid) -> String {
    format!("streamspace-user-home-{user_id}")
}

/// `5901/tcp`, the key Docker uses for a container port.
pub fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

fn labels(
    session_id: Uuid,
    agent_id: &str,
    template: &Template,
    user_home: Option<Uuid>,
) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (SESSION_LABEL.to_owned(), session_id.to_string()),
        (AGENT_LABEL.to_owned(), agent_id.to_owned()),
        (
            HOME_LABEL.to_owned(),
            template.persistent_home.as_str().to_owned(),
        ),
        (VNC_PORT_LABEL.to_owned(), template.ports.vnc.to_string()),
        (TEMPLATE_LABEL.to_owned(), template.name.clone()),
    ]);
    if let Some(user_id) = user_home {
        labels.insert(USER_HOME_LABEL.to_owned(), user_id.to_string());
    }
    labels
}

/// Mount options of the memory-backed scratch directories of a read-only session.
const SCRATCH_OPTIONS: &str = "rw,nosuid,nodev";

/// The container for one session: the template's image, command and environment, its VNC port
/// published on loopback with a port the engine picks, its CPU and memory limits, the home
/// volume when the template asks for one (the user's own, [`user_volume_name`], when
/// `user_home` names its user), and the agent's [`Confinement`].
pub fn container(
    session_id: Uuid,
    agent_id: &str,
    template: &Template,
    image: &str,
    confinement: &Confinement,
    user_home: Option<Uuid>,
) -> ContainerCreateBody {
    let vnc = port_key(template.ports.vnc);
    let mut env: Vec<String> = template
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.push(format!("STREAMSPACE_SESSION_ID={session_id}"));
    if !template.env.contains_key("VNC_PORT") {
        env.push(format!("VNC_PORT={}", template.ports.vnc));
    }
    let source = match user_home {
        Some(user_id) => Some(user_volume_name(user_id)),
        None => template
            .persistent_home
            .has_volume()
            .then(|| volume_name(session_id)),
    };
    let mounts = source.map(|source| {
        vec![Mount {
            target: Some(HOME_MOUNT.to_owned()),
            source: Some(source),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        }]
    });
    let tmpfs = confinement.read_only_root.then(|| {
        let mut dirs: HashMap<String, String> = SCRATCH_DIRS
            .iter()
            .map(|dir| ((*dir).to_owned(), SCRATCH_OPTIONS.to_owned()))
            .collect();
        if mounts.is_none() {
            dirs.insert(HOME_MOUNT.to_owned(), SCRATCH_OPTIONS.to_owned());
        }
        dirs
    });
    let memory = template
        .resources
        .memory_mib
        .map(|m| i64::from(m) * 1024 * 1024);
    let host_config = HostConfig {
        port_bindings: Some(HashMap::from([(
            vnc.clone(),
            Some(vec![PortBinding {
                host_ip: Some(crate::runtime::vnc::LOOPBACK.to_owned()),
                // Empty: the engine picks a free port, read back after start.
                host_port: Some(String::new()),
            }]),
        )])),
        nano_cpus: template
            .resources
            .cpu_millis
            .map(|m| i64::from(m) * 1_000_000),
        memory,
        // No swap beyond the memory limit: the limit is what the session gets.
        memory_swap: memory,
        mounts,
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(DESKTOP_CAPABILITIES.map(str::to_owned).to_vec()),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        pids_limit: Some(i64::from(confinement.pids_limit)),
        readonly_rootfs: confinement.read_only_root.then_some(true),
        tmpfs,
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: (!template.command.is_empty()).then(|| template.command.clone()),
        env: Some(env),
        labels: Some(labels(session_id, agent_id, template, user_home)),
        exposed_ports: Some(vec![vnc]),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// The session's home volume, labelled like its container.
pub fn volume(session_id: Uuid, agent_id: &str, template: &Template) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(volume_name(session_id)),
        labels: Some(labels(session_id, agent_id, template, None)),
        ..Default::default()
    }
}

/// The home volume of the user `user_id`: labelled as StreamSpace's, with the user and the
/// agent that made it, and never with a session (it outlives them all).
pub fn user_volume(user_id: Uuid, agent_id: &str) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(user_volume_name(user_id)),
        labels: Some(HashMap::from([
            (AGENT_LABEL.to_owned(), agent_id.to_owned()),
            (HOME_LABEL.to_owned(), HomePolicy::User.as_str().to_owned()),
            (USER_HOME_LABEL.to_owned(), user_id.to_string()),
        ])),
        ..Default::default()
    }
}

/// The user whose home a volume or container carries, from its labels.
pub fn user_home_of(labels: Option<&HashMap<String, String>>) -> Option<Uuid> {
    labels?.get(USER_HOME_LABEL)?.parse().ok()
}

/// The home policy recorded in a container's or volume's labels (`none` if absent or unknown).
pub fn home_policy(labels: Option<&HashMap<String, String>>) -> HomePolicy {
    labels
        .and_then(|l| l.get(HOME_LABEL))
        .and_then(|p| p.parse().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_proto::api::{CreateTemplate, TemplateResources};

    #[test]
    fn container_carries_labels_limits_port_and_volume() {
        let id = Uuid::now_v7();
        let t = Template::new(
            CreateTemplate {
                name: "desk".into(),
                image: Some("img:1".into()),
                resources: TemplateResources {
                    cpu_millis: Some(500),
                    memory_mib: Some(256),
                },
                persistent_home: HomePolicy::Retain,
                ..Default::default()
            },
            chrono::Utc::now(),
        );
        let c = container(id, "a1", &t, "img:1", &Confinement::default(), None);
        let labels = c.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(SESSION_LABEL), Some(&id.to_string()));
        assert_eq!(labels.get(AGENT_LABEL).map(String::as_str), Some("a1"));
        assert_eq!(home_policy(Some(&labels)), HomePolicy::Retain);
        let host = c.host_config.unwrap_or_default();
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.memory, Some(256 * 1024 * 1024));
        assert!(
            host.port_bindings
                .unwrap_or_default()
                .contains_key("5901/tcp")
        );
        let mounts = host.mounts.unwrap_or_default();
        assert_eq!(mounts[0].source, Some(volume_name(id)));
        assert_eq!(c.cmd, None, "an empty command keeps the image's own");
    }

    #[test]
    fn a_user_home_session_mounts_the_users_volume() {
        let (session, user) = (Uuid::now_v7(), Uuid::now_v7());
        let t = Template::new(
            CreateTemplate {
                name: "desk".into(),
                image: Some("img:1".into()),
                persistent_home: HomePolicy::User,
                ..Default::default()
            },
            chrono::Utc::now(),
        );
        let c = container(
            session,
            "a1",
            &t,
            "img:1",
            &Confinement::default(),
            Some(user),
        );
        let mounts = c.host_config.unwrap_or_default().mounts.unwrap_or_default();
        assert_eq!(mounts[0].source, Some(user_volume_name(user)));
        assert_eq!(mounts[0].target.as_deref(), Some(HOME_MOUNT));
        assert_eq!(user_home_of(c.labels.as_ref()), Some(user));
        let volume = user_volume(user, "a1");
        assert_eq!(volume.name, Some(user_volume_name(user)));
        assert_eq!(user_home_of(volume.labels.as_ref()), Some(user));
        assert!(!user_volume_name(user).contains(&session.to_string()));
    }

    #[test]
    fn container_is_confined() {
        let t = Template::new(
            CreateTemplate {
                name: "desk".into(),
                image: Some("img:1".into()),
                resources: TemplateResources {
                    cpu_millis: None,
                    memory_mib: Some(512),
                },
                ..Default::default()
            },
            chrono::Utc::now(),
        );
        let id = Uuid::now_v7();
        let open = container(id, "a1", &t, "img:1", &Confinement::default(), None);
        let host = open.host_config.unwrap_or_default();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.cap_add,
            Some(vec![
                "CHOWN".to_owned(),
                "DAC_OVERRIDE".to_owned(),
                "FOWNER".to_owned(),
                "SETUID".to_owned(),
                "SETGID".to_owned(),
                "KILL".to_owned(),
            ])
        );
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(host.memory_swap, Some(512 * 1024 * 1024));
        assert_eq!(host.readonly_rootfs, None);
        assert_eq!(host.tmpfs, None);

        let strict = Confinement {
            pids_limit: 100,
            read_only_root: true,
            fs_group: None,
        };
        let host = container(id, "a1", &t, "img:1", &strict, None)
            .host_config
            .unwrap_or_default();
        assert_eq!(host.pids_limit, Some(100));
        assert_eq!(host.readonly_rootfs, Some(true));
        let tmpfs = host.tmpfs.unwrap_or_default();
        let mut dirs: Vec<&str> = tmpfs.keys().map(String::as_str).collect();
        dirs.sort_unstable();
        assert_eq!(
            dirs,
            ["/home", "/run", "/tmp", "/var/tmp"],
            "no volume: home in memory"
        );
    }
}
