//! Session runtimes: the one place that knows how a session is actually run.
//!
//! The executor speaks only to the [`Runtime`] trait, so adding the Docker or Kubernetes runtime
//! never touches the connection loop or the duplicate suppression. Every method is idempotent
//! where the protocol asks for it (starting a running session returns its address, stopping an
//! unknown session succeeds), because the control plane delivers commands at least once.
//! Callers serialise actions on one session; a runtime need not defend against two concurrent
//! actions on the same session id.

pub mod confinement;
pub mod docker;
pub mod kubernetes;
pub mod process;
pub mod vnc;

use async_trait::async_trait;
use streamspace_proto::SessionState;
use streamspace_proto::api::Template;
use streamspace_proto::wire::SessionStatus;
use uuid::Uuid;

pub use confinement::Confinement;
pub use docker::{DockerRuntime, DockerRuntimeConfig};
pub use kubernetes::{KubernetesRuntime, KubernetesRuntimeConfig};
pub use process::{ProcessRuntime, ProcessRuntimeConfig};

/// What a runtime observes about one session it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub session_id: Uuid,
    /// `running`, `hibernated`, or `failed` (its processes died; see `message`).
    pub state: SessionState,
    /// Where the session's VNC server listens, as seen from the agent (`host:port`, see
    /// [`vnc`]).
    pub vnc_address: String,
    /// Why the session failed, when it did.
    pub message: Option<String>,
}

impl SessionInfo {
    /// The report the control plane understands.
    pub fn to_status(&self) -> SessionStatus {
        SessionStatus {
            session_id: self.session_id,
            state: self.state,
            vnc_address: (!self.state.is_terminal()).then(|| self.vnc_address.clone()),
            message: self.message.clone(),
        }
    }

    /// Whether the session counts against the agent's capacity.
    pub fn is_live(&self) -> bool {
        matches!(self.state, SessionState::Running | SessionState::Hibernated)
    }
}

/// How the agent's tunnel reaches a session's VNC server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VncTarget {
    /// The server's address ([`vnc`] says how it is written).
    pub address: String,
    /// The password the server asks for, which the tunnel answers for the viewer; `None` if it
    /// asks for none (containers, whose VNC port only the agent's host reaches).
    pub password: Option<vnc::auth::VncPassword>,
}

/// Why a runtime action did not happen. The control plane shows the user the whole chain
/// ([`crate::Chain`]): this message, then its source's.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no session {0} on this agent")]
    UnknownSession(Uuid),
    #[error("session {session_id} has failed: {message}")]
    SessionFailed { session_id: Uuid, message: String },
    #[error("{0}")]
    MissingProgram(String),
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
    /// The runtime's own settings cannot work (found when it is built).
    #[error("invalid runtime settings: {0}")]
    InvalidConfig(String),
    #[error("session did not start: {0}")]
    StartFailed(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Signal(String),
    /// The session's image is not on the Docker host, and pulling it failed.
    #[error("image {image:?} is not on the Docker host and pulling it failed")]
    ImagePull {
        image: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The Docker Engine API failed or refused a request.
    #[error("{what}")]
    Docker {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The Kubernetes API answered a request with an error status (its message and reason
    /// are the source).
    #[error("{what} (HTTP {code})")]
    KubernetesApi {
        what: String,
        code: u16,
        #[source]
        source: Box<kube::core::Status>,
    },
    /// The Kubernetes API could not be reached, or its answer could not be read.
    #[error("{what}")]
    Kubernetes {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The container platform answered something the runtime cannot use.
    #[error("{0}")]
    Platform(String),
    /// This runtime cannot carry files into or out of its sessions.
    #[error("{0}")]
    TransferUnsupported(String),
    /// A user's home cannot be removed (or shared) while a session uses it.
    #[error("{0}")]
    HomeInUse(String),
}

impl RuntimeError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// The refusal of a runtime that has no user homes (or of a start that names no owner).
pub(crate) fn no_user_homes(platform: &str, template: &Template) -> RuntimeError {
    RuntimeError::InvalidTemplate(format!(
        "template {:?} asks for the user's own home (persistent_home: user), which the {platform} \
         runtime of this agent does not keep",
        template.name
    ))
}

/// Runs sessions on one kind of compute.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `process`, `docker` or `kubernetes`: what the agent registers as its platform.
    fn platform(&self) -> &'static str;

    /// Starts the session, or returns it unchanged if it is already running or hibernated.
    async fn start(
        &self,
        session_id: Uuid,
        template: &Template,
    ) -> Result<SessionInfo, RuntimeError>;

    /// Whether this runtime keeps one home per user ([`Runtime::start_with_user_home`],
    /// [`Runtime::delete_user_home`]); the agent announces it when it registers.
    fn user_homes(&self) -> bool {
        false
    }

    /// Starts a session whose template's `persistent_home` is `user`, with the home of the
    /// user `user_id` (made on first use, kept when the session stops), or returns it
    /// unchanged if it is already running or hibernated. A runtime without user homes refuses.
    async fn start_with_user_home(
        &self,
        session_id: Uuid,
        template: &Template,
        user_id: Uuid,
    ) -> Result<SessionInfo, RuntimeError> {
        let _ = (session_id, user_id);
        Err(no_user_homes(self.platform(), template))
    }

    /// Removes the home of the user `user_id` (a deleted user); removing one that does not
    /// exist succeeds.
    async fn delete_user_home(&self, user_id: Uuid) -> Result<(), RuntimeError> {
        let _ = user_id;
        Err(RuntimeError::InvalidTemplate(format!(
            "the {} runtime keeps no user homes",
            self.platform()
        )))
    }

    /// Stops the session and removes everything it left behind. Stopping a session that is
    /// unknown or already stopped succeeds.
    async fn stop(&self, session_id: Uuid) -> Result<(), RuntimeError>;

    /// Freezes the session; hibernating a hibernated session succeeds.
    async fn hibernate(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError>;

    /// Resumes a hibernated session; waking a running session succeeds.
    async fn wake(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError>;

    /// The session as observed now, or `None` if this runtime does not hold it.
    async fn status(&self, session_id: Uuid) -> Result<Option<SessionInfo>, RuntimeError>;

    /// Every session held now, as observed now (including ones whose processes died and that
    /// have not been stopped yet: those are `failed`).
    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError>;

    /// Called once when the agent starts: re-adopts the sessions a previous agent process left
    /// running, cleans up the ones that died, and returns what happened to each.
    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError>;

    /// Where the session's VNC server listens, if the session is held and alive.
    async fn vnc_address(&self, session_id: Uuid) -> Result<Option<String>, RuntimeError> {
        Ok(self
            .status(session_id)
            .await?
            .filter(SessionInfo::is_live)
            .map(|s| s.vnc_address))
    }

    /// The session's transfer folder (see [`crate::transfer`]), if the session is held and
    /// alive. By default transfers are not supported, and the error says so to the person who
    /// asked.
    async fn transfer_folder(
        &self,
        session_id: Uuid,
    ) -> Result<Box<dyn crate::transfer::TransferFolder>, RuntimeError> {
        let _ = session_id;
        Err(RuntimeError::TransferUnsupported(format!(
            "the {} runtime does not carry files into or out of sessions",
            self.platform()
        )))
    }

    /// How the tunnel reaches the session's VNC server, if the session is held and alive: its
    /// address and, where the server asks for one, its password. By default the address of
    /// [`Runtime::vnc_address`] and no password; a runtime whose servers ask for one says so
    /// (and a wrapper forwards it).
    async fn vnc_target(&self, session_id: Uuid) -> Result<Option<VncTarget>, RuntimeError> {
        Ok(self
            .vnc_address(session_id)
            .await?
            .map(|address| VncTarget {
                address,
                password: None,
            }))
    }
}
