//! The `docker` runtime: one container per session through the Docker Engine API (Docker, or
//! Podman's compatible socket), over a unix socket or plain TCP.
//!
//! - **Start** creates `streamspace-<session id>` from the template's image, labelled with the
//!   session and agent ids (module `spec`), its VNC port published on 127.0.0.1 with a port the engine
//!   picks, CPU and memory limits from the template, and a `streamspace-home-<session id>` volume
//!   on `/home` when the template has a home policy — or, with `persistent_home: user`, the
//!   user's own `streamspace-user-home-<user id>` volume, made on first use and shared by all of
//!   that user's sessions on this engine. The container is confined as
//!   [`super::confinement`] describes: capabilities dropped but for a desktop's few,
//!   `no-new-privileges`, a process limit, no swap beyond the memory limit, and optionally a
//!   read-only root. It is ready when the published port answers with the RFB banner.
//! - **Hibernate** pauses the container (as the process runtime stops its process group): the
//!   desktop keeps its state and its port, wake is instant, and a paused container is told apart
//!   from a dead one without any state of our own. Memory stays allocated while hibernated.
//! - **Stop** stops and removes the container; the volume is deleted or kept per the policy
//!   recorded in its labels. A user's volume is never removed by a stop, only by
//!   [`Runtime::delete_user_home`], which refuses while a container of the user mounts it.
//! - **Recover** (agent start) adopts running and paused containers labelled for this agent,
//!   reports exited ones as failed and removes them, and removes containers that were created but
//!   never started (an interrupted start, which the control plane redelivers) once they are older
//!   than a grace period.
//! - **File transfer** goes through the engine's archive endpoints into `Transfers/` in the
//!   session's home inside the container (module `files`).
//!
//! The engine is the only state: nothing is written to the agent's state directory.

mod archive;
mod files;
mod pull;
mod spec;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptions, StopContainerOptionsBuilder,
};
use streamspace_proto::SessionState;
use streamspace_proto::api::{HomePolicy, Template};
use uuid::Uuid;

use super::{Confinement, Runtime, RuntimeError, SessionInfo, vnc};
use crate::Chain;

pub use spec::{
    AGENT_LABEL, SESSION_LABEL, USER_HOME_LABEL, container_name, user_volume_name, volume_name,
};

/// The Docker Engine endpoint used when none is configured.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Settings of the docker runtime.
#[derive(Debug, Clone)]
pub struct DockerRuntimeConfig {
    /// `unix:///path` or `tcp://host:port`; `None` uses [`DEFAULT_DOCKER_HOST`].
    pub host: Option<String>,
    /// Containers are labelled with it; recovery touches only this agent's containers.
    pub agent_id: String,
    /// How long a session's VNC port has to answer after the container starts.
    pub ready_timeout: Duration,
    /// How long a container has to exit on stop before it is killed.
    pub stop_timeout: Duration,
    /// Containers of this agent that were created but never started are removed at recovery
    /// once they are older than this (younger ones may be a start still in progress elsewhere).
    pub orphan_grace: Duration,
    /// How long pulling a missing image may take.
    pub pull_timeout: Duration,
    /// Capabilities, process limit and root file system of session containers.
    pub confinement: Confinement,
}

impl DockerRuntimeConfig {
    pub fn new(agent_id: impl Into<String>) -> Self {
        Self {
            host: None,
            agent_id: agent_id.into(),
            ready_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
            orphan_grace: Duration::from_secs(300),
            pull_timeout: Duration::from_secs(600),
            confinement: Confinement::default(),
        }
    }
}

/// See the module documentation.
pub struct DockerRuntime {
    docker: Docker,
    config: DockerRuntimeConfig,
    /// Sessions a `stop` of ours is removing: their containers exit before they are removed,
    /// and an exited container of a session being stopped has not failed.
    stopping: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

/// Marks a session as being stopped for as long as it lives (also when the stop is cancelled).
struct Stopping<'a> {
    runtime: &'a DockerRuntime,
    session_id: Uuid,
}

impl<'a> Stopping<'a> {
    fn mark(runtime: &'a DockerRuntime, session_id: Uuid) -> Self {
        runtime.stopping_set().insert(session_id);
        Self {
            runtime,
            session_id,
        }
    }
}

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        self.runtime.stopping_set().remove(&self.session_id);
    }
}

fn engine(what: &str, source: DockerError) -> RuntimeError {
    RuntimeError::Docker {
        what: what.to_owned(),
        source,
    }
}

/// 404, or the 500 "… no such container" Podman answers for a container removed while the
/// request was in flight.
fn is_not_found(e: &DockerError) -> bool {
    match e {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => true,
        DockerError::DockerResponseServerError {
            status_code: 500,
            message,
        } => message.contains("no such container") || message.contains("no such volume"),
        _ => false,
    }
}

impl DockerRuntime {
    /// Connects lazily: a wrong host shows up as an error on the first request (at recovery).
    pub fn new(config: DockerRuntimeConfig) -> Result<Self, RuntimeError> {
        let host = config.host.as_deref().unwrap_or(DEFAULT_DOCKER_HOST);
        let docker = Docker::connect_with_host(host)
            .map_err(|e| engine(&format!("cannot use the Docker host {host:?}"), e))?;
        Ok(Self {
            docker,
            config,
            stopping: Default::default(),
        })
    }

    fn stopping_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        // A poisoned set still holds the right ids: nothing panics while holding it.
        self.stopping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn inspect(
        &self,
        session_id: Uuid,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let name = container_name(session_id);
        match self.docker.inspect_container(&name, None).await {
            Ok(c) if self.is_ours(c.config.as_ref().and_then(|c| c.labels.as_ref())) => Ok(Some(c)),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine("inspecting a session container", e)),
        }
    }

    fn is_ours(&self, labels: Option<&HashMap<String, String>>) -> bool {
        labels.and_then(|l| l.get(AGENT_LABEL)) == Some(&self.config.agent_id)
    }

    /// Creates the home volume unless it exists (a retained one is reused).
    async fn ensure_volume(
        &self,
        session_id: Uuid,
        template: &Template,
    ) -> Result<(), RuntimeError> {
        match self.docker.inspect_volume(&volume_name(session_id)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine("inspecting the home volume", e)),
        }
        let request = spec::volume(session_id, &self.config.agent_id, template);
        self.docker
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|e| engine("creating the home volume", e))
    }

    /// Creates the home volume of `user_id` unless it exists. An existing volume of that name
    /// that is not labelled as that user's home is refused rather than mounted.
    async fn ensure_user_volume(&self, user_id: Uuid) -> Result<(), RuntimeError> {
        let name = user_volume_name(user_id);
        match self.docker.inspect_volume(&name).await {
            Ok(v) if spec::user_home_of(Some(&v.labels)) == Some(user_id) => return Ok(()),
            Ok(_) => {
                return Err(RuntimeError::StartFailed(format!(
                    "a volume {name} exists on the Docker host but is not StreamSpace's home of \
                     user {user_id}"
                )));
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine("inspecting the user's home volume", e)),
        }
        match self
            .docker
            .create_volume(spec::user_volume(user_id, &self.config.agent_id))
            .await
        {
            Ok(_) => {
                tracing::info!(%user_id, volume = %name, "user home volume created");
                Ok(())
            }
            // Made meanwhile by another session of the same user.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine("creating the user's home volume", e)),
        }
    }

    /// The containers (in any state) that mount the home of `user_id`.
    async fn user_home_containers(&self, user_id: Uuid) -> Result<Vec<String>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{USER_HOME_LABEL}={user_id}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| engine("listing the containers of a user home", e))?;
        Ok(containers
            .into_iter()
            .map(|c| {
                session_of(c.labels.as_ref())
                    .map(|id| format!("session {id}"))
                    .or_else(|| c.names.and_then(|n| n.into_iter().next()))
                    .unwrap_or_else(|| c.id.unwrap_or_default())
            })
            .collect())
    }

    /// Removes the container (stopping it first) and, if its policy says so, its volume.
    async fn remove(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        let name = container_name(session_id);
        let stop = StopContainerOptionsBuilder::new()
            .t(i32::try_from(self.config.stop_timeout.as_secs()).unwrap_or(i32::MAX))
            .build();
        match self.docker.stop_container(&name, Some(stop)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            // 304: already stopped; other failures are settled by the forced remove below.
            Err(e) => tracing::debug!(session_id = %session_id, error = %e, "stopping container"),
        }
        let remove = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(&name, Some(remove)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine("removing a session container", e)),
        }
        self.remove_volume_per_policy(session_id).await
    }

    async fn remove_volume_per_policy(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        let name = volume_name(session_id);
        let volume = match self.docker.inspect_volume(&name).await {
            Ok(v) => v,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(engine("inspecting the home volume", e)),
        };
        if !self.is_ours(Some(&volume.labels))
            || spec::home_policy(Some(&volume.labels)) != HomePolicy::Delete
        {
            return Ok(());
        }
        match self
            .docker
            .remove_volume(&name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(engine("removing the home volume", e)),
        }
    }

    /// Waits until the container runs and its published VNC port answers; fails early if the
    /// container exits.
    async fn wait_ready(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let deadline = Instant::now() + self.config.ready_timeout;
        loop {
            let info = self
                .inspect(session_id)
                .await?
                .map(|c| observe(session_id, &c))
                .ok_or_else(|| RuntimeError::StartFailed("the container disappeared".into()))?;
            if info.state == SessionState::Failed {
                let why = info.message.unwrap_or_default();
                return Err(RuntimeError::StartFailed(why));
            }
            if !info.vnc_address.is_empty() && vnc::banner_ok(&info.vnc_address).await {
                return Ok(info);
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::StartFailed(format!(
                    "the session's VNC server did not answer within {:?}",
                    self.config.ready_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create_and_start(
        &self,
        session_id: Uuid,
        template: &Template,
        user_home: Option<Uuid>,
    ) -> Result<SessionInfo, RuntimeError> {
        let image = template
            .image
            .as_deref()
            .filter(|i| !i.trim().is_empty())
            .ok_or_else(|| {
                RuntimeError::InvalidTemplate(format!(
                    "template {:?} has no image; the docker runtime runs sessions from container images",
                    template.name
                ))
            })?;
        match user_home {
            Some(user_id) => self.ensure_user_volume(user_id).await?,
            None if template.persistent_home.has_volume() => {
                self.ensure_volume(session_id, template).await?;
            }
            None => {}
        }
        let name = container_name(session_id);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let body = spec::container(
            session_id,
            &self.config.agent_id,
            template,
            image,
            &self.config.confinement,
            user_home,
        );
        match self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(_) => {}
            // 404: the image is missing; pull it and try once more.
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                tracing::info!(session_id = %session_id, image, "pulling the session image");
                self.pull(image).await?;
                self.docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| engine("creating the session container", e))?;
            }
            Err(e) => return Err(engine("creating the session container", e)),
        }
        self.docker
            .start_container(&name, None)
            .await
            .map_err(|e| engine("starting the session container", e))?;
        self.wait_ready(session_id).await
    }

    /// This agent's containers: live ones (created, running, paused, being removed) and dead
    /// ones (exited; and dead or restarting where the engine knows those states — Podman
    /// refuses them as filters). Podman briefly reports a container it is stopping as
    /// `stopped`, a state the Docker API does not have and bollard cannot read; such a container
    /// is being stopped by an action of ours, so a listing that cannot be read for that reason
    /// is skipped for this round.
    async fn own_containers(&self) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let listing = |e| engine("listing session containers", e);
        let mut containers = self
            .containers_with_status(&["created", "running", "paused", "removing"])
            .await
            .map_err(listing)?;
        match self.containers_with_status(&["exited"]).await {
            Ok(exited) => containers.extend(exited),
            Err(e @ DockerError::JsonDataError { .. }) => {
                tracing::debug!(error = %e, "skipping an unreadable listing of stopped containers");
            }
            Err(e) => return Err(listing(e)),
        }
        match self.containers_with_status(&["dead", "restarting"]).await {
            Ok(more) => containers.extend(more),
            Err(e) => {
                tracing::debug!(error = %e, "the engine cannot list dead or restarting containers")
            }
        }
        Ok(containers)
    }

    async fn containers_with_status(
        &self,
        statuses: &[&str],
    ) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
        let filters = HashMap::from([
            (
                "label",
                vec![format!("{AGENT_LABEL}={}", self.config.agent_id)],
            ),
            ("status", statuses.iter().map(|s| (*s).to_owned()).collect()),
        ]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        self.docker.list_containers(Some(options)).await
    }
}

/// What a container inspection says about its session.
fn observe(session_id: Uuid, c: &ContainerInspectResponse) -> SessionInfo {
    let state = c.state.as_ref();
    let status = state.and_then(|s| s.status);
    let (session_state, message) = match status {
        Some(ContainerStateStatusEnum::PAUSED) => (SessionState::Hibernated, None),
        // Transitions of a live container (being started, restarted, stopped or removed by an
        // action in progress) are not failures: reporting them as such would make the agent
        // clean up a session another action is still working on.
        Some(
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::CREATED
            | ContainerStateStatusEnum::RESTARTING
            | ContainerStateStatusEnum::STOPPING
            | ContainerStateStatusEnum::REMOVING,
        ) => (SessionState::Running, None),
        other => {
            let code = state.and_then(|s| s.exit_code).unwrap_or_default();
            let error = state.and_then(|s| s.error.clone()).unwrap_or_default();
            let status = other
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into());
            let mut message = format!("the session container is {status} (exit code {code})");
            if !error.is_empty() {
                message.push_str(&format!(": {error}"));
            }
            (SessionState::Failed, Some(message))
        }
    };
    SessionInfo {
        session_id,
        state: session_state,
        vnc_address: published_vnc(c).unwrap_or_default(),
        message,
    }
}

/// `127.0.0.1:PORT` where the container's VNC port is published.
fn published_vnc(c: &ContainerInspectResponse) -> Option<String> {
    let labels = c.config.as_ref()?.labels.as_ref()?;
    let port: u16 = labels.get(spec::VNC_PORT_LABEL)?.parse().ok()?;
    let ports = c.network_settings.as_ref()?.ports.as_ref()?;
    let binding = ports.get(&spec::port_key(port))?.as_ref()?.first()?;
    let host_port = binding.host_port.as_deref()?.parse().ok()?;
    Some(vnc::address(vnc::LOOPBACK, host_port))
}

fn session_of(labels: Option<&HashMap<String, String>>) -> Option<Uuid> {
    labels?.get(SESSION_LABEL)?.parse().ok()
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn platform(&self) -> &'static str {
        "docker"
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
        self.start_session(session_id, template, Some(user_id))
            .await
    }

    async fn delete_user_home(&self, user_id: Uuid) -> Result<(), RuntimeError> {
        let users = self.user_home_containers(user_id).await?;
        if !users.is_empty() {
            return Err(RuntimeError::HomeInUse(format!(
                "the home of user {user_id} is in use by {}; stop those sessions first",
                users.join(", ")
            )));
        }
        let name = user_volume_name(user_id);
        match self.docker.inspect_volume(&name).await {
            Ok(v) if spec::user_home_of(Some(&v.labels)) == Some(user_id) => {}
            // Not ours to remove: a volume of that name StreamSpace did not make.
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(engine("inspecting the user's home volume", e)),
        }
        match self
            .docker
            .remove_volume(&name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => {
                tracing::info!(%user_id, volume = %name, "user home volume removed");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            // Mounted by a container made since the check (or not made by StreamSpace).
            Err(DockerError::DockerResponseServerError {
                status_code: 409,
                message,
            }) => Err(RuntimeError::HomeInUse(format!(
                "the home of user {user_id} is in use by a container: {message}"
            ))),
            Err(e) => Err(engine("removing the user's home volume", e)),
        }
    }

    async fn stop(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        let _stopping = Stopping::mark(self, session_id);
        self.remove(session_id).await
    }

    async fn hibernate(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let info = self.live(session_id).await?;
        if info.state == SessionState::Running {
            self.docker
                .pause_container(&container_name(session_id))
                .await
                .map_err(|e| engine("pausing the session container", e))?;
        }
        self.live(session_id).await
    }

    async fn wake(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let info = self.live(session_id).await?;
        if info.state == SessionState::Hibernated {
            self.docker
                .unpause_container(&container_name(session_id))
                .await
                .map_err(|e| engine("unpausing the session container", e))?;
        }
        self.live(session_id).await
    }

    async fn status(&self, session_id: Uuid) -> Result<Option<SessionInfo>, RuntimeError> {
        let info = self
            .inspect(session_id)
            .await?
            .map(|c| observe(session_id, &c));
        // A container that exited because we are stopping it is on its way out, not failed.
        Ok(info.filter(|i| {
            i.state != SessionState::Failed || !self.stopping_set().contains(&session_id)
        }))
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        let mut sessions = Vec::new();
        for summary in self.own_containers().await? {
            let Some(session_id) = session_of(summary.labels.as_ref()) else {
                continue;
            };
            if let Some(info) = self.status(session_id).await? {
                sessions.push(info);
            }
        }
        Ok(sessions)
    }

    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        recover::run(self).await
    }

    async fn transfer_folder(
        &self,
        session_id: Uuid,
    ) -> Result<Box<dyn crate::transfer::TransferFolder>, RuntimeError> {
        let container = self
            .inspect(session_id)
            .await?
            .ok_or(RuntimeError::UnknownSession(session_id))?;
        let info = observe(session_id, &container);
        if !info.is_live() {
            return Err(RuntimeError::SessionFailed {
                session_id,
                message: info.message.unwrap_or_default(),
            });
        }
        Ok(Box::new(files::ContainerFolder::new(
            self.docker.clone(),
            container_name(session_id),
            home_of(&container),
        )))
    }
}

/// The session's home inside its container: the `HOME` its environment sets (the image's or
/// the template's), else where the home volume is mounted.
fn home_of(c: &ContainerInspectResponse) -> String {
    c.config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .and_then(|env| {
            env.iter()
                .rev()
                .find_map(|e| e.strip_prefix("HOME="))
                .filter(|home| home.starts_with('/') && !home.split('/').any(|p| p == ".."))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| spec::HOME_MOUNT.to_owned())
}

impl DockerRuntime {
    /// Starts the session (with the home volume of `user_home`'s user, when given), or returns
    /// it unchanged if it is already running or hibernated.
    async fn start_session(
        &self,
        session_id: Uuid,
        template: &Template,
        user_home: Option<Uuid>,
    ) -> Result<SessionInfo, RuntimeError> {
        if let Some(existing) = self.inspect(session_id).await? {
            let info = observe(session_id, &existing);
            if info.is_live() {
                return Ok(info);
            }
            // A leftover that never became a session (or died): start afresh.
            self.remove(session_id).await?;
        }
        match self.create_and_start(session_id, template, user_home).await {
            Ok(info) => {
                tracing::info!(session_id = %session_id, vnc = %info.vnc_address, "session container running");
                Ok(info)
            }
            Err(e) => {
                if let Err(cleanup) = self.remove(session_id).await {
                    tracing::warn!(session_id = %session_id, error = %Chain(&cleanup), "cleaning up a failed start");
                }
                Err(e)
            }
        }
    }

    /// The session, which must be running or hibernated.
    async fn live(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let info = self
            .status(session_id)
            .await?
            .ok_or(RuntimeError::UnknownSession(session_id))?;
        if info.state == SessionState::Failed {
            return Err(RuntimeError::SessionFailed {
                session_id,
                message: info.message.unwrap_or_default(),
            });
        }
        Ok(info)
    }
}

mod recover;
