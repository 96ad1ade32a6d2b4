//! Command-line definitions. Every flag can also come from an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "streamspace",
    version,
    about = "Stream containerised desktop applications to the browser"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log output format.
    #[arg(long, global = true, env = "STREAMSPACE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Threads running the process's tasks (default: one per CPU). Where several replicas, the
    /// database and agents share a few CPUs, fewer threads per process means fewer context
    /// switches.
    #[arg(long, global = true, env = "STREAMSPACE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform locally: control plane on SQLite plus a local agent.
    Up(UpArgs),
    /// Run one control-plane replica.
    Server(ServerArgs),
    /// Run an agent (with flags), or manage agents (`list`, `show`, `delete`).
    Agent(AgentCommand),
    /// Apply, revert or list database migrations.
    Migrate(MigrateArgs),
    /// Create, list and control sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// List agent commands.
    #[command(subcommand, name = "command")]
    Commands(CommandsCommand),
    /// Manage session templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Create, list and revoke agent keys.
    #[command(subcommand)]
    AgentKey(AgentKeyCommand),
}

impl Command {
    /// Long-running roles log at info; one-shot client commands only say what went wrong.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Up(_) | Command::Server(_) | Command::Migrate(_) => "info",
            Command::Agent(a) if a.action.is_none() => "info",
            _ => "warn",
        }
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the database, admin token and session state live [default: the user's data
    /// directory, e.g. ~/.local/share/streamspace].
    #[arg(long, env = "STREAMSPACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for the REST API and the agent endpoint.
    #[arg(long, env = "STREAMSPACE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Most sessions the local agent runs at once.
    #[arg(long, env = "STREAMSPACE_MAX_SESSIONS", default_value_t = 10)]
    pub max_sessions: u32,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// PostgreSQL (postgres://…) or SQLite (sqlite:PATH) database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, env = "STREAMSPACE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// This replica's name [default: $POD_NAME, else the hostname].
    #[arg(long, env = "STREAMSPACE_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Redis shared by the replicas (redis://HOST:PORT, or
    /// redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER); without it agents are reachable only
    /// through the replica they connect to.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Address (HOST:PORT) other replicas reach this one at [default: the listen address].
    #[arg(long, env = "STREAMSPACE_INTERNAL_ADDRESS")]
    pub internal_address: Option<String>,
    /// Do not apply pending migrations at start (run `streamspace migrate up` yourself).
    #[arg(long, env = "STREAMSPACE_NO_MIGRATE")]
    pub no_migrate: bool,
    /// If set, a newly generated admin token is also written to DIR/admin-token (mode 0600).
    #[arg(long, env = "STREAMSPACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: ServerTuning,
}

#[derive(Debug, Args)]
pub struct ServerTuning {
    /// Seconds between agent heartbeats; an agent silent for three intervals is offline.
    #[arg(long, env = "STREAMSPACE_HEARTBEAT_INTERVAL", default_value_t = 10)]
    pub heartbeat_interval: u64,
    /// Workers delivering commands to agents.
    #[arg(long, env = "STREAMSPACE_DISPATCHER_WORKERS", default_value_t = 10)]
    pub dispatcher_workers: usize,
    /// Seconds to wait for an agent's ack before resending (doubles per attempt).
    #[arg(long, env = "STREAMSPACE_ACK_TIMEOUT", default_value_t = 5)]
    pub ack_timeout: u64,
    /// Delivery attempts before a command is given up.
    #[arg(long, env = "STREAMSPACE_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: i32,
    /// Seconds a sent or acknowledged command may go without progress before it fails.
    #[arg(long, env = "STREAMSPACE_COMMAND_DEADLINE", default_value_t = 120)]
    pub command_deadline: u64,
    /// Seconds a command may wait for an offline agent before it fails.
    #[arg(long, env = "STREAMSPACE_PENDING_TTL", default_value_t = 86_400)]
    pub pending_ttl: u64,
    /// Seconds a send to a viewer may take; a viewer that does not read for that long is closed
    /// with 1013.
    #[arg(long, env = "STREAMSPACE_VIEWER_SEND_TIMEOUT", default_value_t = 10)]
    pub viewer_send_timeout: u64,
    /// Seconds a viewer being closed is given to take its close frame.
    #[arg(long, env = "STREAMSPACE_VIEWER_CLOSE_GRACE", default_value_t = 10)]
    pub viewer_close_grace: u64,
    /// Seconds a viewer token from `session connect` stays valid.
    #[arg(long, env = "STREAMSPACE_VIEWER_TOKEN_TTL", default_value_t = 60)]
    pub viewer_token_ttl: u64,
    /// Base URL browsers use to reach the control plane (for the viewer URL) [default: from the
    /// request's Host header].
    #[arg(long, env = "STREAMSPACE_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentCommand {
    #[command(subcommand)]
    pub action: Option<AgentAction>,
    #[command(flatten)]
    pub run: AgentRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// List agents.
    List(ClientArgs),
    /// Show one agent.
    Show {
        agent_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Forget an agent and revoke its keys.
    Delete {
        agent_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Send the agent a `ping` and wait for its answer; fails if none comes in time.
    Ping {
        agent_id: String,
        /// Seconds to wait for the answer (at most 60).
        #[arg(long, default_value_t = 10.0)]
        wait: f64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct AgentRunArgs {
    /// Control plane base URL (http:// or https://); repeat to fail over between replicas.
    #[arg(long = "server", env = "STREAMSPACE_SERVER", value_delimiter = ',')]
    pub servers: Vec<String>,
    /// This agent's id (the key must be bound to it).
    #[arg(long, env = "STREAMSPACE_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Agent key from `streamspace agent-key create`.
    #[arg(long, env = "STREAMSPACE_AGENT_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// How sessions run.
    #[arg(long, env = "STREAMSPACE_RUNTIME", value_enum, default_value_t = RuntimeArg::Process)]
    pub runtime: RuntimeArg,
    /// Where the agent keeps session state [default: DATA_DIR/agent-ID, DATA_DIR being $STREAMSPACE_DATA_DIR or ~/.local/share/streamspace].
    #[arg(long, env = "STREAMSPACE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Most sessions this agent runs at once.
    #[arg(long, env = "STREAMSPACE_MAX_SESSIONS", default_value_t = 10)]
    pub max_sessions: u32,
    /// A label KEY=VALUE to report (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Commands executed at once.
    #[arg(long, env = "STREAMSPACE_MAX_CONCURRENT_COMMANDS", default_value_t = 8)]
    pub max_concurrent_commands: usize,
    /// Docker Engine API for `--runtime docker`: unix:///path or tcp://host:port [default:
    /// $DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Namespace of the sessions and of the agent lease for `--runtime kubernetes` [default:
    /// the service account's namespace in-cluster, else the kubeconfig context's].
    #[arg(long, env = "STREAMSPACE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubeconfig file for `--runtime kubernetes` [default: $KUBECONFIG, ~/.kube/config, else
    /// the in-cluster service account].
    #[arg(long, env = "STREAMSPACE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Seconds a standby replica waits for an unrenewed agent lease before taking over
    /// (`--runtime kubernetes`).
    #[arg(
        long,
        env = "STREAMSPACE_LEASE_SECS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(3..=600)
    )]
    pub lease_secs: u64,
    /// Storage class of session home volumes (`--runtime kubernetes`) [default: the cluster's
    /// default class].
    #[arg(long, env = "STREAMSPACE_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// Size of a session home volume (`--runtime kubernetes`), a Kubernetes quantity.
    #[arg(long, env = "STREAMSPACE_HOME_SIZE", default_value = "10Gi")]
    pub home_size: String,
    /// The cluster's DNS domain, for session VNC addresses (`--runtime kubernetes`).
    #[arg(
        long,
        env = "STREAMSPACE_CLUSTER_DOMAIN",
        default_value = "cluster.local"
    )]
    pub cluster_domain: String,
    /// Run as one of several processes with this agent id, only the holder of an exclusive
    /// lock on this file being active (process and docker runtimes; the file must be on a
    /// filesystem all of them share, with working locks).
    #[arg(long, env = "STREAMSPACE_HA_LOCK_FILE")]
    pub ha_lock_file: Option<PathBuf>,
    /// Milliseconds between a standby's attempts to take the HA lock: the longest a takeover
    /// waits after the active process dies.
    #[arg(long, env = "STREAMSPACE_HA_RETRY_MS", default_value_t = 1000)]
    pub ha_retry_ms: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuntimeArg {
    /// Xvnc plus the template's program, as local processes.
    Process,
    /// Containers through the Docker Engine API (Docker or Podman's compatible socket).
    Docker,
    /// Pods in a Kubernetes cluster (in-cluster service account or kubeconfig).
    Kubernetes,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub action: MigrateAction,
    /// PostgreSQL (postgres://…) or SQLite (sqlite:PATH) database.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the newest migrations.
    Down {
        /// How many migrations to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// How client commands reach the control plane.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Control plane base URL.
    #[arg(
        long,
        env = "STREAMSPACE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// API token [default: the admin token `streamspace up` saved in $STREAMSPACE_DATA_DIR or the
    /// default data directory].
    #[arg(long, env = "STREAMSPACE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', env = "STREAMSPACE_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session from a template.
    Create {
        template: String,
        /// Wait until the session is running (or has failed).
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List sessions, newest first.
    List {
        /// Only sessions placed on this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only sessions of this user (operators and admins; users see only their own).
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one session.
    Show {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a session for good.
    Stop {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Suspend a running session.
    Hibernate {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a hibernated session.
    Wake {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Wait until the session is running, then print the viewer's WebSocket URL (with a
    /// short-lived token; `-o json` prints the token and its expiry too).
    Connect {
        id: uuid::Uuid,
        /// Seconds to wait for the session to be running.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CommandsCommand {
    /// List recent commands, newest first.
    List {
        #[arg(long)]
        session: Option<uuid::Uuid>,
        #[arg(long)]
        agent: Option<String>,
        /// pending, sent, acknowledged, completed or failed.
        #[arg(long)]
        status: Option<streamspace_proto::CommandStatus>,
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one command.
    Show {
        command_id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// List templates.
    List(ClientArgs),
    /// Add a template.
    Create {
        name: String,
        /// Program and arguments to run in the session, e.g. `--command xterm --command -fa`
        /// (required unless --image is given).
        #[arg(
            long = "command",
            required_unless_present = "image",
            allow_hyphen_values = true
        )]
        command: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Environment variable KEY=VALUE for the program (repeatable).
        #[arg(long = "env", value_parser = parse_label)]
        env: Vec<(String, String)>,
        /// A group whose members may launch it (repeatable; none: every user may).
        #[arg(long = "allowed-group")]
        allowed_groups: Vec<String>,
        #[command(flatten)]
        runtime: TemplateRuntimeArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a template.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// What container runtimes need from a template.
#[derive(Debug, Args)]
pub struct TemplateRuntimeArgs {
    /// Container image (docker and kubernetes runtimes).
    #[arg(long)]
    pub image: Option<String>,
    /// The port the image's VNC server listens on.
    #[arg(long, default_value_t = streamspace_proto::api::DEFAULT_VNC_PORT)]
    pub vnc_port: u16,
    /// CPU limit in thousandths of a core (500 = half a core).
    #[arg(long)]
    pub cpu_millis: Option<u32>,
    /// Memory limit in MiB.
    #[arg(long)]
    pub memory_mib: Option<u32>,
    /// Home volume: none, delete (removed at stop) or retain (kept after stop).
    #[arg(long, default_value = "none")]
    pub persistent_home: streamspace_proto::api::HomePolicy,
    /// Hibernate sessions after this many seconds without a viewer.
    #[arg(long)]
    pub idle_timeout_secs: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum AgentKeyCommand {
    /// Create a key bound to one agent id; the secret is shown once.
    Create {
        agent_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List keys (never their secrets).
    List(ClientArgs),
    /// Revoke a key.
    Revoke {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn agent_runs_with_flags_and_lists_with_a_subcommand() {
        let cli = Cli::try_parse_from([
            "streamspace",
            "agent",
            "--server",
            "http://a:8080",
            "--server",
            "http://b:8080",
            "--agent-id",
            "a1",
            "--key",
            "k",
        ])
        .expect("agent run parses");
        let Command::Agent(agent) = cli.command else {
            panic!("expected the agent command");
        };
        assert!(agent.action.is_none());
        assert_eq!(agent.run.servers, ["http://a:8080", "http://b:8080"]);

        let cli = Cli::try_parse_from(["streamspace", "agent", "list", "-o", "json"])
            .expect("agent list parses");
        let Command::Agent(agent) = cli.command else {
            panic!("expected the agent command");
        };
        assert!(matches!(agent.action, Some(AgentAction::List(_))));
    }

    #[test]
    fn the_kubernetes_runtime_takes_namespace_kubeconfig_and_lease_flags() {
        let base = [
            "streamspace",
            "agent",
            "--server",
            "http://a",
            "--agent-id",
            "a1",
        ];
        let parse = |extra: &[&str]| {
            Cli::try_parse_from(base.iter().chain(["--key", "k"].iter()).chain(extra.iter()))
        };
        let cli = parse(&[
            "--runtime",
            "kubernetes",
            "--namespace",
            "desktops",
            "--kubeconfig",
            "/etc/kube/config",
            "--lease-secs",
            "30",
        ])
        .expect("kubernetes flags parse");
        let Command::Agent(agent) = cli.command else {
            panic!("expected the agent command");
        };
        assert!(matches!(agent.run.runtime, RuntimeArg::Kubernetes));
        assert_eq!(agent.run.namespace.as_deref(), Some("desktops"));
        assert_eq!(
            agent.run.kubeconfig.as_deref(),
            Some(std::path::Path::new("/etc/kube/config"))
        );
        assert_eq!(agent.run.lease_secs, 30);
        assert_eq!(agent.run.home_size, "10Gi");
        assert_eq!(agent.run.cluster_domain, "cluster.local");
        assert_eq!(agent.run.storage_class, None);
        // Shorter than the renewal cadence can work with: refused.
        assert!(parse(&["--lease-secs", "1"]).is_err());
    }
}
