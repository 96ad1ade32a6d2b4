//! The agent's configuration: one typed struct, built by the CLI and passed down explicitly.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Which runtime runs the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeKind {
    /// Local processes under Xvnc (see [`crate::runtime::process`]).
    #[default]
    Process,
    /// Containers through the Docker Engine API (Docker or Podman).
    Docker,
    /// Pods in a Kubernetes cluster.
    Kubernetes,
}

impl RuntimeKind {
    /// The platform name the agent registers with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Docker => "docker",
            Self::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A runtime name that is none of [`RuntimeKind`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown runtime {0:?}; expected process, docker or kubernetes")]
pub struct UnknownRuntime(pub String);

impl FromStr for RuntimeKind {
    type Err = UnknownRuntime;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "process" => Ok(Self::Process),
            "docker" => Ok(Self::Docker),
            "kubernetes" => Ok(Self::Kubernetes),
            other => Err(UnknownRuntime(other.to_owned())),
        }
    }
}

/// Everything [`crate::run`] needs. Build it with [`AgentConfig::new`] and adjust fields.
#[derive(Clone)]
pub struct AgentConfig {
    /// Control-plane base URLs (`http(s)://host:port[/prefix]`), tried in turn.
    pub servers: Vec<String>,
    pub agent_id: String,
    /// The agent key, sent as `Authorization: Bearer <key>`. Never logged.
    pub key: String,
    pub runtime: RuntimeKind,
    /// Where the agent keeps session state and its recent-command log (made 0700).
    pub state_dir: PathBuf,
    /// The user (name or uid) the `process` runtime starts sessions as; the agent must run as
    /// root. `None`: sessions run as the agent's own user.
    pub run_as: Option<String>,
    /// Where the `process` runtime's transfer folder lives instead of the session user's home
    /// (`<dir>/Transfers`). `None`: the user's home.
    pub transfer_home: Option<PathBuf>,
    /// Most sessions this agent runs at once.
    pub max_sessions: u32,
    pub labels: BTreeMap<String, String>,
    /// Most commands executed at the same time.
    pub max_concurrent_commands: usize,
    /// First reconnect delay ceiling; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A connection that stayed up this long resets the backoff.
    pub stable_after: Duration,
    /// How long to wait for the TCP/TLS/WebSocket handshake.
    pub connect_timeout: Duration,
    /// How long the control plane has to answer `register` with `welcome`.
    pub welcome_timeout: Duration,
    /// How long one write to the control plane may take before the connection counts as lost
    /// and is rebuilt. `None` (the default) uses the heartbeat interval the server sets in
    /// `welcome`: a write stuck that long has already delayed the next heartbeat, and the server
    /// only gives up on an agent after three intervals, so there is time to reconnect.
    pub write_timeout: Option<Duration>,
    /// How many finished commands are remembered for duplicate suppression.
    pub command_log_capacity: usize,
    /// The Docker Engine API endpoint (`unix:///path` or `tcp://host:port`) for the docker
    /// runtime; `None` uses `/var/run/docker.sock` (the CLI fills it from `DOCKER_HOST`).
    pub docker_host: Option<String>,
    /// High availability for the process and docker runtimes: only the process holding this
    /// lease runs (see [`crate::leadership::flock`]). `None`: this process is always active.
    pub ha: Option<crate::leadership::HaConfig>,
    /// Cluster access (namespace, kubeconfig, lease) for the kubernetes runtime.
    pub kubernetes: crate::runtime::kubernetes::KubernetesOptions,
    /// How the docker and kubernetes runtimes confine session containers.
    pub confinement: crate::runtime::Confinement,
    /// What TLS to the control plane trusts besides the system's roots (`--ca-cert`) and the
    /// client certificate it presents (`--tls-client-cert`/`--tls-client-key`).
    pub tls: streamspace_client::tls::TlsOptions,
    /// Accept plain `http://` server URLs whose host is not a loopback address
    /// (`--allow-insecure`); otherwise they are refused at start.
    pub allow_insecure: bool,
    /// Carry viewer streams in WebSockets only (`--websocket-streams`), never asking for a raw
    /// stream first.
    pub websocket_streams: bool,
}

impl AgentConfig {
    /// A configuration with the defaults an operator expects.
    pub fn new(
        servers: Vec<String>,
        agent_id: impl Into<String>,
        key: impl Into<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            servers,
            agent_id: agent_id.into(),
            key: key.into(),
            runtime: RuntimeKind::Process,
            state_dir: state_dir.into(),
            run_as: None,
            transfer_home: None,
            max_sessions: 10,
            labels: BTreeMap::new(),
            max_concurrent_commands: 8,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            welcome_timeout: Duration::from_secs(10),
            write_timeout: None,
            command_log_capacity: 1000,
            docker_host: None,
            ha: None,
            kubernetes: Default::default(),
            confinement: Default::default(),
            tls: Default::default(),
            allow_insecure: false,
            websocket_streams: false,
        }
    }
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentConfig")
            .field("servers", &self.servers)
            .field("agent_id", &self.agent_id)
            .field("key", &"<redacted>")
            .field("runtime", &self.runtime)
            .field("state_dir", &self.state_dir)
            .field("run_as", &self.run_as)
            .field("transfer_home", &self.transfer_home)
            .field("max_sessions", &self.max_sessions)
            .field("labels", &self.labels)
            .field("max_concurrent_commands", &self.max_concurrent_commands)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("stable_after", &self.stable_after)
            .field("connect_timeout", &self.connect_timeout)
            .field("welcome_timeout", &self.welcome_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("command_log_capacity", &self.command_log_capacity)
            .field("docker_host", &self.docker_host)
            .field("ha", &self.ha)
            .field("kubernetes", &self.kubernetes)
            .field("confinement", &self.confinement)
            .field("tls", &self.tls)
            .field("allow_insecure", &self.allow_insecure)
            .field("websocket_streams", &self.websocket_streams)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_key() {
        let c = AgentConfig::new(vec!["http://x".into()], "a1", "s3cr3t-key", "/tmp/x");
        let text = format!("{c:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(c.max_sessions, 10);
        assert_eq!(c.max_concurrent_commands, 8);
    }

    #[test]
    fn runtime_kind_parses() {
        assert_eq!("process".parse::<RuntimeKind>(), Ok(RuntimeKind::Process));
        assert_eq!("docker".parse::<RuntimeKind>(), Ok(RuntimeKind::Docker));
        assert_eq!(
            "kubernetes".parse::<RuntimeKind>(),
            Ok(RuntimeKind::Kubernetes)
        );
        assert_eq!(
            "podman".parse::<RuntimeKind>().map_err(|e| e.to_string()),
            Err("unknown runtime \"podman\"; expected process, docker or kubernetes".to_owned())
        );
    }
}
