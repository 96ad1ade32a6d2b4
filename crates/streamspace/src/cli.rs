//! Command-line definitions. Every setting can also come from an environment variable.
//!
//! Durations take units (`500ms`, `30s`, `5m`, `1h`; see [`crate::duration`]); a bare number
//! counts seconds, or milliseconds for flags that were named `*-ms`. Values out of range are
//! refused by the parsers here, with clap's error naming the flag.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::DurationParser;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Heartbeats travel to agents in whole seconds.
pub const HEARTBEAT: DurationParser = DurationParser::secs().at_least(secs(1)).whole_seconds();
/// Kubernetes leases count whole seconds; shorter than 3 s leaves no room to renew.
pub const LEASE: DurationParser = DurationParser::secs()
    .at_least(secs(3))
    .at_most(secs(600))
    .whole_seconds();
/// Retrying a file lock more often than every 10 ms only burns CPU.
pub const HA_RETRY: DurationParser = DurationParser::millis()
    .at_least(Duration::from_millis(10))
    .at_most(secs(600));
/// The API takes idle timeouts in whole seconds, up to 30 days.
const IDLE_TIMEOUT: DurationParser = DurationParser::secs()
    .at_most(secs(30 * 86_400))
    .whole_seconds();
/// Default of `--lease` (`STREAMSPACE_LEASE`).
pub const DEFAULT_LEASE: Duration = secs(15);
/// Default of `--ha-retry` (`STREAMSPACE_HA_RETRY`).
pub const DEFAULT_HA_RETRY: Duration = secs(1);

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

/// An address or network (`10.0.0.0/8`); a bare address is a network of one.
fn parse_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is neither an IP address nor a network like 10.0.0.0/8"))
}

/// How long a kind of history is kept: a duration, or for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// `forever`, or a duration from an hour to ten years (`30d`, `2160h`).
fn parse_retention(s: &str) -> Result<Retention, String> {
    if s.trim().eq_ignore_ascii_case("forever") {
        return Ok(Retention(None));
    }
    DurationParser::secs()
        .at_least(secs(3600))
        .at_most(secs(3650 * 86_400))
        .parse(s)
        .map(|d| Retention(Some(d)))
        .map_err(|e| format!("{e} (or `forever`)"))
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
    Server(Box<ServerArgs>),
    /// Run an agent (with flags), or manage agents (`list`, `show`, `delete`).
    Agent(Box<AgentCommand>),
    /// Apply, revert or list database migrations.
    Migrate(MigrateArgs),
    /// Create, list and control sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// List agent commands.
    #[command(subcommand, name = "command")]
    Commands(CommandsCommand),
    /// List, download and delete recordings of viewings (a session's owner and admins).
    #[command(subcommand)]
    Recording(RecordingCommand),
    /// Manage session templates.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Create, list and revoke agent keys.
    #[command(subcommand)]
    AgentKey(AgentKeyCommand),
    /// Sign in and save an API token for the commands that follow.
    Login(crate::cli_identity::LoginArgs),
    /// Sign out: revoke the saved token and forget it.
    Logout(ClientArgs),
    /// Show who the token in use belongs to.
    Whoami(ClientArgs),
    /// Manage users (admins).
    #[command(subcommand)]
    User(crate::cli_identity::UserCommand),
    /// Manage groups (admins).
    #[command(subcommand)]
    Group(crate::cli_identity::GroupCommand),
    /// Turn two-step sign-in with one-time codes on or off for your account.
    #[command(subcommand)]
    Totp(crate::cli_identity::TotpCommand),
    /// Create, list and revoke personal API tokens.
    #[command(subcommand)]
    Token(crate::cli_identity::TokenCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(crate::cli_identity::AuditCommand),
    /// The whole system over the last hours and now: sessions by state, agents with their
    /// load, commands per interval and failures (operators).
    Overview(OverviewArgs),
    /// Show and set the quotas of users and groups (admins).
    #[command(subcommand)]
    Quota(crate::cli_identity::QuotaCommand),
    /// Print the REST API's OpenAPI document (the one a server serves at
    /// /api/v1/openapi.json), with no server needed.
    Openapi,
    /// Serve a session's transfer folder to its agent: the sidecar the `kubernetes` runtime
    /// puts in every session pod (not for use by hand). The token comes from
    /// STREAMSPACE_TRANSFER_TOKEN only, never from a flag.
    #[command(hide = true)]
    TransferSidecar(TransferSidecarArgs),
}

#[derive(Debug, Args)]
pub struct TransferSidecarArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:5990")]
    pub listen: std::net::SocketAddr,
    /// The directory holding the transfer folder (`Transfers/` in it).
    #[arg(long)]
    pub home: PathBuf,
}

impl Command {
    /// Long-running roles log at info; one-shot client commands only say what went wrong.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Up(_)
            | Command::Server(_)
            | Command::Migrate(_)
            | Command::TransferSidecar(_) => "info",
            Command::Agent(a) if a.action.is_none() => "info",
            _ => "warn",
        }
    }
}

#[derive(Debug, Args)]
pub struct OverviewArgs {
    /// How many hours back, 1 to 168.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=168))]
    pub hours: u32,
    /// How many of the newest intervals the table shows (JSON has them all).
    #[arg(long, default_value_t = 12)]
    pub last: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the database, admin token and local agent's state live; client commands look for
    /// the admin token here [default: the user's data directory, e.g.
    /// ~/.local/share/streamspace].
    #[arg(long, env = "STREAMSPACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for the REST API and the agent endpoint.
    #[arg(long, env = "STREAMSPACE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Most sessions the local agent runs at once.
    #[arg(long, env = "STREAMSPACE_MAX_SESSIONS", default_value_t = 10)]
    pub max_sessions: u32,
    /// Serve TLS with this PEM certificate chain (with --tls-key); the local agent trusts it.
    /// Without it `up` serves plain HTTP, on loopback by default.
    #[arg(long, env = "STREAMSPACE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "STREAMSPACE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Whether viewings are recorded (into the recordings folder of the data directory): off,
    /// on_request or always.
    #[arg(long, env = "STREAMSPACE_RECORDING_POLICY", default_value = "off")]
    pub recording_policy: streamspace_proto::api::RecordingPolicy,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// PostgreSQL (postgres://…; add ?sslmode=verify-full for verified TLS) or SQLite
    /// (sqlite:PATH) database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Connections this replica keeps to PostgreSQL at most. Every replica has its own pool,
    /// so replicas × this must stay under the server's `max_connections`; fewer also means
    /// fewer backends to wake where the database shares a few CPUs. SQLite ignores it.
    #[arg(long, env = "STREAMSPACE_DATABASE_POOL_SIZE", default_value_t = streamspace_store::DEFAULT_PG_POOL_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_pool_size: u32,
    /// Address to listen on.
    #[arg(long, env = "STREAMSPACE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// This replica's name [default: $POD_NAME, else the hostname].
    #[arg(long, env = "STREAMSPACE_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Redis shared by the replicas: redis://HOST:PORT or
    /// redis+sentinel://HOST:PORT,HOST:PORT…/MASTER, rediss:// and rediss+sentinel:// for TLS;
    /// USER:PASSWORD@ before the host is the data nodes' credential. Without it agents are
    /// reachable only through the replica they connect to.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// A file holding the Redis data nodes' password, for a --redis-url without one.
    #[arg(long, env = "STREAMSPACE_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// The Sentinels' own ACL user (with redis+sentinel://) [default: none, `default`].
    #[arg(long, env = "STREAMSPACE_REDIS_SENTINEL_USERNAME")]
    pub redis_sentinel_username: Option<String>,
    /// A file holding the Sentinels' own password (their requirepass), which is separate from
    /// the data nodes' credential in the URL.
    #[arg(long, env = "STREAMSPACE_REDIS_SENTINEL_PASSWORD_FILE")]
    pub redis_sentinel_password_file: Option<PathBuf>,
    /// Address (HOST:PORT) other replicas reach this one at [default: the listen address].
    #[arg(long, env = "STREAMSPACE_INTERNAL_ADDRESS")]
    pub internal_address: Option<String>,
    /// Do not apply pending migrations at start (run `streamspace migrate up` yourself).
    #[arg(long, env = "STREAMSPACE_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Where a generated admin token is written, as DIR/admin-token (mode 0600; it is never
    /// printed or logged), and where client commands given the same STREAMSPACE_DATA_DIR find
    /// it [default: the user's data directory, e.g. ~/.local/share/streamspace].
    #[arg(long, env = "STREAMSPACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A file holding the master secret every key is derived from (at least 32 bytes, e.g.
    /// `openssl rand -hex 32`), the same on every replica [default: one generated into the
    /// database on the first start].
    #[arg(long, env = "STREAMSPACE_MASTER_SECRET_FILE")]
    pub master_secret_file: Option<PathBuf>,
    /// During a rotation: a file holding the previous master secret, still accepted (tokens
    /// and hashes made with it keep working; stored hashes are re-made with the new one on use)
    /// but used for nothing new.
    #[arg(long, env = "STREAMSPACE_PREVIOUS_MASTER_SECRET_FILE")]
    pub previous_master_secret_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
    #[command(flatten)]
    pub tuning: ServerTuning,
    #[command(flatten)]
    pub oidc: crate::sso::OidcArgs,
    #[command(flatten)]
    pub recording: RecordingArgs,
}

/// Recording of viewings: the policy and where recordings are stored.
#[derive(Debug, Args)]
pub struct RecordingArgs {
    /// Where recordings are stored: dir:PATH (a local directory) or s3://BUCKET/PREFIX (an
    /// S3-compatible store, see --s3-*) [default: none, nothing is recorded; `streamspace up`:
    /// the recordings folder of its data directory].
    #[arg(long, env = "STREAMSPACE_RECORDING_STORE", value_parser = parse_recording_store)]
    pub recording_store: Option<streamspace_server::RecordingStoreConfig>,
    /// The S3 API's URL, for S3-compatible stores other than AWS (http:// allowed).
    #[arg(long, env = "STREAMSPACE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region [default: us-east-1].
    #[arg(long, env = "STREAMSPACE_S3_REGION")]
    pub s3_region: Option<String>,
    /// The access key id for the S3 store.
    #[arg(long, env = "STREAMSPACE_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// A file holding the S3 secret access key.
    #[arg(long, env = "STREAMSPACE_S3_SECRET_ACCESS_KEY_FILE")]
    pub s3_secret_access_key_file: Option<PathBuf>,
}

fn parse_recording_store(s: &str) -> Result<streamspace_server::RecordingStoreConfig, String> {
    streamspace_server::RecordingStoreConfig::parse(s)
}

/// The server's TLS: what it serves, what it asks of clients, what it trusts when it calls out.
#[derive(Debug, Args)]
pub struct ServerTlsArgs {
    /// Serve TLS with this PEM certificate chain (with --tls-key). The files are read again
    /// whenever they change, so a renewed certificate needs no restart.
    #[arg(long, env = "STREAMSPACE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "STREAMSPACE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Ask clients for a certificate issued by these CAs (PEM). Browsers and the CLI may
    /// still connect without one; see --require-agent-certs.
    #[arg(long, env = "STREAMSPACE_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Refuse agents (control and data connections) that present no certificate from
    /// --client-ca, in addition to checking their key.
    #[arg(long, env = "STREAMSPACE_REQUIRE_AGENT_CERTS", requires = "client_ca")]
    pub require_agent_certs: bool,
    /// Trust the CA certificates in this PEM file for this replica's own connections: besides
    /// the system's roots to other replicas and single sign-on providers; instead of the
    /// public web roots for rediss://.
    #[arg(long, env = "STREAMSPACE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Verify other replicas' certificates against this name instead of the host of their
    /// internal address (often a pod IP): e.g. the Service name on the replicas' shared
    /// certificate [default: the address's host, which must then be on the certificate].
    #[arg(long, env = "STREAMSPACE_INTERNAL_TLS_NAME")]
    pub internal_tls_name: Option<String>,
}

/// How an agent or the CLI trusts the control plane's TLS.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// Trust the CA certificates in this PEM file, besides the system's, to verify the
    /// control plane.
    #[arg(long, env = "STREAMSPACE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Accept a plain http:// control plane URL whose host is not a loopback address (the
    /// credentials would cross the network unencrypted): only on a network you trust.
    #[arg(long, env = "STREAMSPACE_ALLOW_INSECURE")]
    pub allow_insecure: bool,
}

#[derive(Debug, Args)]
pub struct ServerTuning {
    /// Interval between agent heartbeats, in whole seconds; an agent silent for three intervals
    /// is offline.
    #[arg(long, env = "STREAMSPACE_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = HEARTBEAT)]
    pub heartbeat_interval: Duration,
    /// Workers delivering commands to agents.
    #[arg(long, env = "STREAMSPACE_DISPATCHER_WORKERS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub dispatcher_workers: u32,
    /// How long to wait for an agent's ack before resending (doubles per attempt).
    #[arg(long, env = "STREAMSPACE_ACK_TIMEOUT", default_value = "5s", value_parser = DurationParser::secs())]
    pub ack_timeout: Duration,
    /// Delivery attempts before a command is given up.
    #[arg(long, env = "STREAMSPACE_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_attempts: i32,
    /// How long a sent or acknowledged command may go without progress before it fails.
    #[arg(long, env = "STREAMSPACE_COMMAND_DEADLINE", default_value = "2m", value_parser = DurationParser::secs())]
    pub command_deadline: Duration,
    /// How long a command may wait for an offline agent before it fails.
    #[arg(long, env = "STREAMSPACE_PENDING_TTL", default_value = "24h", value_parser = DurationParser::secs())]
    pub pending_ttl: Duration,
    /// How often the dispatcher sweeps the database: it fails commands past their deadlines,
    /// marks silent agents offline and delivers what it was not woken for; as often, the replica
    /// closes its viewers of sessions no longer running.
    #[arg(long, env = "STREAMSPACE_SWEEP_INTERVAL", default_value = "1s", value_parser = DurationParser::secs())]
    pub sweep_interval: Duration,
    /// Most agent WebSocket connections this replica holds at once; more are refused with 503.
    #[arg(long, env = "STREAMSPACE_MAX_AGENT_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_agent_connections: u32,
    /// Largest accepted REST request body, in bytes.
    #[arg(long, env = "STREAMSPACE_MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1 << 30))]
    pub max_body_bytes: u32,
    /// How long a send to a viewer may take; a viewer that does not read for that long is closed
    /// with 1013.
    #[arg(long, env = "STREAMSPACE_VIEWER_SEND_TIMEOUT", default_value = "10s", value_parser = DurationParser::secs())]
    pub viewer_send_timeout: Duration,
    /// How long a viewer being closed is given to take its close frame.
    #[arg(long, env = "STREAMSPACE_VIEWER_CLOSE_GRACE", default_value = "10s", value_parser = DurationParser::secs())]
    pub viewer_close_grace: Duration,
    /// How long a viewer token from `session connect` stays valid.
    #[arg(long, env = "STREAMSPACE_VIEWER_TOKEN_TTL", default_value = "60s", value_parser = DurationParser::secs())]
    pub viewer_token_ttl: Duration,
    /// How long an agent has to open a viewer's data connection before the viewer is refused.
    #[arg(long, env = "STREAMSPACE_VIEWER_OPEN_TIMEOUT", default_value = "10s", value_parser = DurationParser::secs())]
    pub viewer_open_timeout: Duration,
    /// Most viewer streams (open or waiting for their agent) this replica holds at once; more
    /// are refused with 503.
    #[arg(long, env = "STREAMSPACE_MAX_VIEWER_STREAMS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_viewer_streams: u32,
    /// How long a replica trusts a token or sign-in it checked without asking the database
    /// again; revocations are announced over Redis at once, this bounds a missed one.
    #[arg(long, env = "STREAMSPACE_CREDENTIAL_CACHE_TTL", default_value = "1s", value_parser = DurationParser::secs().at_most(secs(3600)))]
    pub credential_cache_ttl: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (comma-separated addresses or networks,
    /// e.g. `10.0.0.0/8,192.0.2.7`); from anyone else the header is ignored. The client address
    /// goes to the audit log and the sign-in throttle.
    #[arg(long, env = "STREAMSPACE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Base URL browsers use to reach the control plane (for the viewer URL) [default: from the
    /// request's Host header]. An https URL also turns on Strict-Transport-Security.
    #[arg(long, env = "STREAMSPACE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How long a client may take to send a request's header, counted from when the connection
    /// is ready for it; also how long an idle keep-alive connection is kept.
    #[arg(long, env = "STREAMSPACE_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = DurationParser::secs())]
    pub header_read_timeout: Duration,
    /// How long a request may take before it is answered 408 (long polls with `?wait=` and
    /// WebSocket upgrades are exempt).
    #[arg(long, env = "STREAMSPACE_REQUEST_TIMEOUT", default_value = "60s", value_parser = DurationParser::secs())]
    pub request_timeout: Duration,
    /// Most connections (API clients, browsers, agents, viewers) served at once; more wait in
    /// the listen queue.
    #[arg(long, env = "STREAMSPACE_MAX_CONNECTIONS", default_value_t = 25_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Serve `/metrics` on this address (HOST:PORT) only, instead of on the API's.
    #[arg(long, env = "STREAMSPACE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Require `Authorization: Bearer <the file's content>` to read `/metrics`.
    #[arg(long, env = "STREAMSPACE_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// How long completed and failed commands are kept (`forever` keeps them).
    #[arg(long, env = "STREAMSPACE_COMMAND_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub command_retention: Retention,
    /// How long terminated and failed sessions (and their commands) are kept.
    #[arg(long, env = "STREAMSPACE_SESSION_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub session_retention: Retention,
    /// How long audit entries are kept.
    #[arg(long, env = "STREAMSPACE_AUDIT_RETENTION", default_value = "90d", value_parser = parse_retention)]
    pub audit_retention: Retention,
    /// How long recordings of viewings are kept after they end.
    #[arg(long, env = "STREAMSPACE_RECORDING_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub recording_retention: Retention,
    /// Most sessions a user may hold at once (every session not terminated or failed,
    /// hibernated ones included) when neither the user nor any of their groups sets a limit
    /// [default: unlimited].
    #[arg(long, env = "STREAMSPACE_DEFAULT_MAX_SESSIONS")]
    pub default_max_sessions: Option<u32>,
    /// Most CPU, in thousandths of a core, a user's sessions may hold together when neither the
    /// user nor any of their groups sets a limit [default: unlimited].
    #[arg(long, env = "STREAMSPACE_DEFAULT_MAX_CPU_MILLIS")]
    pub default_max_cpu_millis: Option<u32>,
    /// Most memory, in MiB, a user's sessions may hold together when neither the user nor any
    /// of their groups sets a limit [default: unlimited].
    #[arg(long, env = "STREAMSPACE_DEFAULT_MAX_MEMORY_MIB")]
    pub default_max_memory_mib: Option<u32>,
    /// CPU, in thousandths of a core, that a session counts against quotas when its template
    /// sets none (so such templates cannot slip past a CPU limit).
    #[arg(long, env = "STREAMSPACE_DEFAULT_SESSION_CPU_MILLIS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub default_session_cpu_millis: u32,
    /// Memory, in MiB, that a session counts against quotas when its template sets none.
    #[arg(long, env = "STREAMSPACE_DEFAULT_SESSION_MEMORY_MIB", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub default_session_memory_mib: u32,
    /// User homes (templates with `persistent_home: user`) are on storage every agent sees and
    /// many sessions may use at once (a shared directory, a ReadWriteMany storage class): a
    /// user's sessions may run on any agent that keeps user homes, several at a time. Without
    /// it a home stays on the agent that made it and one session uses it at a time.
    #[arg(long, env = "STREAMSPACE_SHARED_USER_HOMES")]
    pub shared_user_homes: bool,
    /// Which way the clipboard may flow where no template or group says: both, to_session,
    /// from_session or none.
    #[arg(long, env = "STREAMSPACE_CLIPBOARD_POLICY", default_value = "both")]
    pub clipboard_policy: streamspace_proto::api::ClipboardPolicy,
    /// Largest clipboard text that may cross, in bytes, where no template or group says.
    #[arg(long, env = "STREAMSPACE_CLIPBOARD_MAX_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    pub clipboard_max_bytes: u32,
    /// Which way files may move where no template or group says: both, upload, download or
    /// none.
    #[arg(long, env = "STREAMSPACE_FILE_TRANSFER_POLICY", default_value = "both")]
    pub file_transfer_policy: streamspace_proto::api::TransferPolicy,
    /// Largest file that may be transferred, in bytes, where no template or group says.
    #[arg(long, env = "STREAMSPACE_TRANSFER_MAX_BYTES", default_value_t = 1024 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub transfer_max_bytes: u64,
    /// Whether viewing is recorded where no template or group says: off, on_request or always.
    #[arg(long, env = "STREAMSPACE_RECORDING_POLICY", default_value = "off")]
    pub recording_policy: streamspace_proto::api::RecordingPolicy,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentCommand {
    #[command(subcommand)]
    pub action: Option<AgentAction>,
    #[command(flatten)]
    pub run: Box<AgentRunArgs>,
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
        /// How long to wait for the answer (at most 60s).
        #[arg(long, default_value = "10s", value_parser = DurationParser::secs().at_most(secs(60)))]
        wait: Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct AgentRunArgs {
    /// Control plane base URL (http:// or https://); repeat (or comma-separate in the variable)
    /// to fail over between replicas.
    #[arg(
        long = "server",
        env = "STREAMSPACE_AGENT_SERVERS",
        value_delimiter = ','
    )]
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
    /// Where the agent keeps session state [default: agent-ID in the user's data directory, e.g.
    /// ~/.local/share/streamspace/agent-ID].
    #[arg(long, env = "STREAMSPACE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Most sessions this agent runs at once.
    #[arg(long, env = "STREAMSPACE_MAX_SESSIONS", default_value_t = 10)]
    pub max_sessions: u32,
    /// Start sessions (Xvnc and the program) as this user, a name or uid (`--runtime process`;
    /// the agent must run as root) [default: the agent's own user].
    #[arg(long, env = "STREAMSPACE_RUN_AS")]
    pub run_as: Option<String>,
    /// Directory holding the transfer folder (`Transfers/`) of `--runtime process` sessions,
    /// for a session user without a usable home (such as `nobody`) [default: the session user's
    /// home].
    #[arg(long, env = "STREAMSPACE_TRANSFER_HOME")]
    pub transfer_home: Option<PathBuf>,
    /// A label KEY=VALUE to report (repeatable; comma-separated in the variable).
    #[arg(long = "label", env = "STREAMSPACE_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Commands executed at once.
    #[arg(long, env = "STREAMSPACE_MAX_CONCURRENT_COMMANDS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_commands: u32,
    /// Carry viewer streams in WebSockets only, never asking for a raw stream: for a proxy in
    /// front of the control plane that passes the raw upgrade on but then breaks it (agents
    /// fall back by themselves when it is refused).
    #[arg(long, env = "STREAMSPACE_WEBSOCKET_STREAMS")]
    pub websocket_streams: bool,
    /// Docker Engine API for `--runtime docker`: unix:///path or tcp://host:port [default:
    /// $DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Namespace of the agent lease, and of the sessions unless --session-namespace is given,
    /// for `--runtime kubernetes` [default: the service account's namespace in-cluster, else
    /// the kubeconfig context's].
    #[arg(long, env = "STREAMSPACE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the sessions' pods, services and volumes for `--runtime kubernetes`, kept
    /// apart from the agent's own [default: --namespace].
    #[arg(long, env = "STREAMSPACE_SESSION_NAMESPACE")]
    pub session_namespace: Option<String>,
    /// Most processes and threads in one session container (`--runtime docker`; on Kubernetes
    /// the kubelet's podPidsLimit applies).
    #[arg(long, env = "STREAMSPACE_SESSION_PIDS_LIMIT", default_value_t = streamspace_agent::runtime::confinement::DEFAULT_PIDS_LIMIT, value_parser = clap::value_parser!(u32).range(16..))]
    pub session_pids_limit: u32,
    /// Give session containers a read-only root file system, with /tmp, /var/tmp, /run (and
    /// the home, when the template keeps none) empty and writable (docker and kubernetes).
    #[arg(long, env = "STREAMSPACE_SESSION_READ_ONLY_ROOT")]
    pub session_read_only_root: bool,
    /// Group that owns session home volumes on Kubernetes (the pod's fsGroup), so that the
    /// non-root desktop user can write its home; 0 leaves the volume as the storage made it.
    #[arg(long, env = "STREAMSPACE_SESSION_FS_GROUP", default_value_t = streamspace_agent::runtime::confinement::DEFAULT_FS_GROUP, value_parser = clap::value_parser!(i64).range(0..=i64::from(u32::MAX)))]
    pub session_fs_group: i64,
    /// Kubeconfig file for `--runtime kubernetes` [default: $KUBECONFIG, ~/.kube/config, else
    /// the in-cluster service account].
    #[arg(long, env = "STREAMSPACE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// How long a standby replica waits for an unrenewed agent lease before taking over
    /// (`--runtime kubernetes`), in whole seconds from 3s to 10m [default: 15s]. Formerly
    /// `--lease-secs`/`STREAMSPACE_LEASE_SECS`, still accepted.
    #[arg(long, alias = "lease-secs", env = "STREAMSPACE_LEASE", value_parser = LEASE)]
    pub lease: Option<Duration>,
    /// Storage class of session home volumes (`--runtime kubernetes`) [default: the cluster's
    /// default class].
    #[arg(long, env = "STREAMSPACE_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// Size of a session home volume (`--runtime kubernetes`), a Kubernetes quantity.
    #[arg(long, env = "STREAMSPACE_HOME_SIZE", default_value = "10Gi")]
    pub home_size: String,
    /// Access mode of users' home volume claims (`--runtime kubernetes`, templates with
    /// `persistent_home: user`): ReadWriteOnce, ReadWriteOncePod or ReadWriteMany.
    #[arg(
        long,
        env = "STREAMSPACE_USER_HOME_ACCESS_MODE",
        default_value = "ReadWriteOnce",
        value_parser = ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]
    )]
    pub user_home_access_mode: String,
    /// Size of a user's home volume claim (`--runtime kubernetes`), a Kubernetes quantity
    /// [default: --home-size].
    #[arg(long, env = "STREAMSPACE_USER_HOME_SIZE")]
    pub user_home_size: Option<String>,
    /// Storage class of users' home volume claims (`--runtime kubernetes`) [default:
    /// --storage-class].
    #[arg(long, env = "STREAMSPACE_USER_HOME_STORAGE_CLASS")]
    pub user_home_storage_class: Option<String>,
    /// Image of the file-transfer sidecar in every session pod (`--runtime kubernetes`),
    /// normally the agent's own image; without it, sessions on Kubernetes carry no files.
    #[arg(long, env = "STREAMSPACE_TRANSFER_SIDECAR_IMAGE")]
    pub transfer_sidecar_image: Option<String>,
    /// Port of the transfer sidecar on the session pod's address (`--runtime kubernetes`).
    #[arg(long, env = "STREAMSPACE_TRANSFER_SIDECAR_PORT", default_value_t = streamspace_agent::runtime::kubernetes::DEFAULT_TRANSFER_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub transfer_sidecar_port: u16,
    /// User (and group) id the transfer sidecar runs as (`--runtime kubernetes`): the one the
    /// session images run as, so that the transfer folder and uploads belong to the desktop's
    /// user.
    #[arg(long, env = "STREAMSPACE_TRANSFER_SIDECAR_UID", default_value_t = streamspace_agent::runtime::kubernetes::DEFAULT_TRANSFER_UID, value_parser = clap::value_parser!(i64).range(1..=i64::from(u32::MAX)))]
    pub transfer_sidecar_uid: i64,
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
    /// Interval between a standby's attempts to take the HA lock: the longest a takeover waits
    /// after the active process dies; a bare number counts milliseconds [default: 1s]. Formerly
    /// `--ha-retry-ms`/`STREAMSPACE_HA_RETRY_MS`, still accepted.
    #[arg(long, alias = "ha-retry-ms", env = "STREAMSPACE_HA_RETRY", value_parser = HA_RETRY)]
    pub ha_retry: Option<Duration>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Present this PEM client certificate to the control plane (with --tls-client-key), for
    /// servers that require agent certificates.
    #[arg(long, env = "STREAMSPACE_TLS_CLIENT_CERT", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// The PEM private key of --tls-client-cert.
    #[arg(long, env = "STREAMSPACE_TLS_CLIENT_KEY", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
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

/// A `KEY=VALUE` argument without its `=` or key.
#[derive(Debug, thiserror::Error)]
#[error("expected KEY=VALUE, got {0:?}")]
pub struct NotKeyValue(String);

fn parse_label(s: &str) -> Result<(String, String), NotKeyValue> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(NotKeyValue(s.to_owned())),
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub action: MigrateAction,
    /// PostgreSQL (postgres://…) or SQLite (sqlite:PATH) database.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
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
    /// API token [default: the one `streamspace login` saved, else the admin token in
    /// $STREAMSPACE_DATA_DIR (or the default data directory), where `streamspace up` saves it].
    #[arg(long, env = "STREAMSPACE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', env = "STREAMSPACE_OUTPUT", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub trust: TrustArgs,
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
        /// How long to wait with --wait.
        #[arg(long, default_value = "60s", value_parser = DurationParser::secs())]
        timeout: Duration,
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
        /// At most this many (pages are followed) [default: all].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
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
    /// Copy a file into or out of a session's transfer folder (`Transfers/` in its home):
    /// `cp LOCAL ID:PATH` uploads, `cp ID:PATH LOCAL` downloads.
    Cp {
        /// A local file, or `ID:PATH` (a session's id and a path in its transfer folder).
        from: String,
        /// A local file, or `ID:PATH`; exactly one of the two is `ID:PATH`.
        to: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a session's transfer folder.
    Ls {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the clipboard, file-transfer and recording rules that apply to you on a session.
    Rules {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Wait until the session is running, then print the viewer's WebSocket URL (with a
    /// short-lived token; `-o json` prints the token and its expiry too).
    Connect {
        id: uuid::Uuid,
        /// How long to wait for the session to be running.
        #[arg(long, default_value = "60s", value_parser = DurationParser::secs())]
        timeout: Duration,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a share link: people signed in who have it open it in the web UI to watch the
    /// session (--view-only: the server drops their input) or to control it (--control).
    Share {
        id: uuid::Uuid,
        /// Watch only.
        #[arg(long, conflicts_with = "control", required_unless_present = "control")]
        view_only: bool,
        /// Keyboard, pointer and clipboard too.
        #[arg(long)]
        control: bool,
        /// How long the link works (at most a week).
        #[arg(long, default_value = "1h", value_parser = DurationParser::secs()
            .at_least(Duration::from_secs(1))
            .at_most(Duration::from_secs(streamspace_proto::api::MAX_SHARE_SECS))
            .whole_seconds())]
        expires: Duration,
        /// Only this user may use the link (repeat for several; with --group, these and the
        /// groups' members) [default: anyone signed in].
        #[arg(long = "user", value_name = "USER")]
        users: Vec<String>,
        /// Only members of this group may use the link (repeatable).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a session's share links (revoked and expired ones too).
    Shares {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a share link; whoever watches through it is disconnected.
    Unshare {
        id: uuid::Uuid,
        share: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List who watches a session (on the replica that answers).
    Viewers {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disconnect a viewer of a session (its id from `session viewers`).
    Kick {
        id: uuid::Uuid,
        viewer: uuid::Uuid,
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
        /// At most this many, newest first (pages are followed) [default: 100].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
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
pub enum RecordingCommand {
    /// List the recordings of a session's viewings, newest first.
    List {
        session: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download a recording's stream (the StreamSpace recording format) into FILE.
    Get {
        id: uuid::Uuid,
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a recording.
    Rm {
        id: uuid::Uuid,
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
        /// The catalog heading it is listed under.
        #[arg(long)]
        category: Option<String>,
        /// A word the catalog's search matches (repeatable; a-z, 0-9 and '-').
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The catalog's picture: terminal, desktop, browser, office, code, graphics, media,
        /// game, science or tools.
        #[arg(long)]
        icon: Option<streamspace_proto::api::TemplateIcon>,
        #[command(flatten)]
        rules: RulesArgs,
        #[command(flatten)]
        runtime: TemplateRuntimeArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change some fields of a template (`PATCH /api/v1/templates/NAME`); what is not given
    /// stays as it is.
    Update {
        name: String,
        /// Replaces the program and arguments (repeatable, as for `create`).
        #[arg(long = "command", allow_hyphen_values = true)]
        command: Vec<String>,
        /// An empty string clears it.
        #[arg(long)]
        description: Option<String>,
        /// Replaces the environment: KEY=VALUE (repeatable).
        #[arg(long = "env", value_parser = parse_label, conflicts_with = "clear_env")]
        env: Vec<(String, String)>,
        /// Removes every environment variable.
        #[arg(long)]
        clear_env: bool,
        /// Groups whose members may launch it, comma-separated (`a,b`); an empty string: every
        /// user may.
        #[arg(long, value_delimiter = ',')]
        allowed_groups: Option<Vec<String>>,
        /// Container image; an empty string removes it.
        #[arg(long)]
        image: Option<String>,
        /// The port the image's VNC server listens on.
        #[arg(long)]
        vnc_port: Option<u16>,
        /// CPU limit in thousandths of a core, or `none`.
        #[arg(long, value_parser = parse_limit)]
        cpu_millis: Option<OrNone<u32>>,
        /// Memory limit in MiB, or `none`.
        #[arg(long, value_parser = parse_limit)]
        memory_mib: Option<OrNone<u32>>,
        /// Home volume: none, delete, retain, or user (the owner's own home, shared by their
        /// sessions).
        #[arg(long)]
        persistent_home: Option<streamspace_proto::api::HomePolicy>,
        /// Hibernate sessions after this long without a viewer (whole seconds, at most 30d), or
        /// `none`.
        #[arg(long, value_parser = parse_idle_timeout)]
        idle_timeout: Option<OrNone<Duration>>,
        /// The catalog heading; an empty string: "Other".
        #[arg(long)]
        category: Option<String>,
        /// Replaces the search tags, comma-separated (`a,b`); an empty string removes them.
        #[arg(long, value_delimiter = ',')]
        tags: Option<Vec<String>>,
        /// The catalog's picture (as for `create`), or `none`.
        #[arg(long, value_parser = parse_icon)]
        icon: Option<OrNone<streamspace_proto::api::TemplateIcon>>,
        #[command(flatten)]
        rules: RulesArgs,
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

/// A flag's value, or `none` to remove what it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrNone<T>(pub Option<T>);

/// A session rule's value, or `inherit`: this level says nothing about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrInherit<T>(pub Option<T>);

fn or_inherit<T: std::str::FromStr>(s: &str) -> Result<OrInherit<T>, String>
where
    T::Err: std::fmt::Display,
{
    if s == "inherit" {
        return Ok(OrInherit(None));
    }
    s.parse()
        .map(|v| OrInherit(Some(v)))
        .map_err(|e| format!("{e} (or `inherit`)"))
}

/// Session rules as flags (`template create/update`, `group rules`); a flag not given leaves
/// that rule as it is, `inherit` removes it from this level.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RulesArgs {
    /// Which way the clipboard may flow: both, to_session, from_session, none, or inherit.
    #[arg(long, value_parser = or_inherit::<streamspace_proto::api::ClipboardPolicy>)]
    pub clipboard: Option<OrInherit<streamspace_proto::api::ClipboardPolicy>>,
    /// Largest clipboard text that may cross, in bytes, or inherit.
    #[arg(long, value_parser = or_inherit::<u32>)]
    pub clipboard_max_bytes: Option<OrInherit<u32>>,
    /// Which way files may move: both, upload, download, none, or inherit.
    #[arg(long, value_parser = or_inherit::<streamspace_proto::api::TransferPolicy>)]
    pub file_transfer: Option<OrInherit<streamspace_proto::api::TransferPolicy>>,
    /// Largest file that may be transferred, in bytes, or inherit.
    #[arg(long, value_parser = or_inherit::<u64>)]
    pub transfer_max_bytes: Option<OrInherit<u64>>,
    /// Whether viewing is recorded: off, on_request, always, or inherit.
    #[arg(long, value_parser = or_inherit::<streamspace_proto::api::RecordingPolicy>)]
    pub recording: Option<OrInherit<streamspace_proto::api::RecordingPolicy>>,
}

impl RulesArgs {
    /// Whether any rule flag was given.
    pub fn any(&self) -> bool {
        self.clipboard.is_some()
            || self.clipboard_max_bytes.is_some()
            || self.file_transfer.is_some()
            || self.transfer_max_bytes.is_some()
            || self.recording.is_some()
    }

    /// `current` with the given flags applied.
    pub fn apply(
        &self,
        current: streamspace_proto::api::SessionRules,
    ) -> streamspace_proto::api::SessionRules {
        fn pick<T: Copy>(flag: Option<OrInherit<T>>, current: Option<T>) -> Option<T> {
            flag.map_or(current, |f| f.0)
        }
        streamspace_proto::api::SessionRules {
            clipboard: pick(self.clipboard, current.clipboard),
            clipboard_max_bytes: pick(self.clipboard_max_bytes, current.clipboard_max_bytes),
            file_transfer: pick(self.file_transfer, current.file_transfer),
            transfer_max_bytes: pick(self.transfer_max_bytes, current.transfer_max_bytes),
            recording: pick(self.recording, current.recording),
        }
    }
}

fn parse_icon(s: &str) -> Result<OrNone<streamspace_proto::api::TemplateIcon>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    s.parse().map(|i| OrNone(Some(i)))
}

fn parse_limit(s: &str) -> Result<OrNone<u32>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    s.parse()
        .map(|v| OrNone(Some(v)))
        .map_err(|e| format!("expected a whole number or `none`: {e}"))
}

fn parse_idle_timeout(s: &str) -> Result<OrNone<Duration>, String> {
    if s == "none" {
        return Ok(OrNone(None));
    }
    IDLE_TIMEOUT
        .parse(s)
        .map(|d| OrNone(Some(d)))
        .map_err(|e| e.to_string())
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
    /// Home volume: none, delete (removed at stop), retain (kept after stop) or user (the
    /// owner's own home, shared by all their sessions that ask for it, kept until the user is
    /// deleted).
    #[arg(long, default_value = "none")]
    pub persistent_home: streamspace_proto::api::HomePolicy,
    /// Hibernate sessions after this long without a viewer (whole seconds, at most 30d).
    /// Formerly `--idle-timeout-secs`, still accepted.
    #[arg(long, alias = "idle-timeout-secs", value_parser = IDLE_TIMEOUT)]
    pub idle_timeout: Option<Duration>,
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
    fn retention_is_a_duration_of_an_hour_or_more_or_forever() {
        assert_eq!(
            parse_retention("30d"),
            Ok(Retention(Some(secs(30 * 86_400))))
        );
        assert_eq!(parse_retention("Forever"), Ok(Retention(None)));
        assert!(parse_retention("5m").is_err(), "shorter than an hour");
        assert!(parse_retention("0").is_err());
        assert!(parse_retention("soon").is_err());
    }

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
        assert_eq!(agent.run.lease, Some(Duration::from_secs(30)));
        assert_eq!(agent.run.home_size, "10Gi");
        assert_eq!(agent.run.cluster_domain, "cluster.local");
        assert_eq!(agent.run.storage_class, None);
        // Shorter than the renewal cadence can work with: refused.
        assert!(parse(&["--lease-secs", "1"]).is_err());
    }

    fn agent_run(extra: &[&str]) -> Result<AgentRunArgs, clap::Error> {
        let base = [
            "streamspace",
            "agent",
            "--server",
            "http://a",
            "--agent-id",
            "a1",
        ];
        let cli = Cli::try_parse_from(base.iter().chain(extra.iter()))?;
        match cli.command {
            Command::Agent(agent) => Ok(*agent.run),
            other => panic!("expected the agent command, got {other:?}"),
        }
    }

    fn server(extra: &[&str]) -> Result<ServerTuning, clap::Error> {
        let base = ["streamspace", "server", "--database-url", "sqlite::memory:"];
        let cli = Cli::try_parse_from(base.iter().chain(extra.iter()))?;
        match cli.command {
            Command::Server(server) => Ok(server.tuning),
            other => panic!("expected the server command, got {other:?}"),
        }
    }

    /// The clap error for `extra`, which must be refused.
    fn refused(result: Result<impl std::fmt::Debug, clap::Error>, flag: &str) -> String {
        let err = result.expect_err("the value must be refused");
        let text = err.to_string();
        assert!(
            text.contains(flag),
            "the error does not name {flag}: {text}"
        );
        text
    }

    #[test]
    fn the_database_pool_size_defaults_to_sixteen_and_refuses_zero() {
        let pool = |extra: &[&str]| {
            let base = ["streamspace", "server", "--database-url", "sqlite::memory:"];
            Cli::try_parse_from(base.iter().chain(extra.iter())).map(|cli| match cli.command {
                Command::Server(server) => server.database_pool_size,
                other => panic!("expected the server command, got {other:?}"),
            })
        };
        assert_eq!(pool(&[]).expect("the default"), 16);
        assert_eq!(pool(&["--database-pool-size", "4"]).expect("a size"), 4);
        refused(pool(&["--database-pool-size", "0"]), "--database-pool-size");
        refused(
            pool(&["--database-pool-size", "1001"]),
            "--database-pool-size",
        );
    }

    #[test]
    fn old_flag_names_and_bare_numbers_keep_their_meaning() {
        let ms = Duration::from_millis;
        let run = agent_run(&["--lease-secs", "30", "--ha-retry-ms", "250"]).expect("old names");
        assert_eq!(run.lease, Some(ms(30_000)), "--lease-secs counts seconds");
        assert_eq!(
            run.ha_retry,
            Some(ms(250)),
            "--ha-retry-ms counts milliseconds"
        );
        let run = agent_run(&["--lease", "1m", "--ha-retry", "2s"]).expect("new names");
        assert_eq!(run.lease, Some(ms(60_000)));
        assert_eq!(run.ha_retry, Some(ms(2_000)));
        let run = agent_run(&["--ha-retry", "500"]).expect("a bare number");
        assert_eq!(
            run.ha_retry,
            Some(ms(500)),
            "--ha-retry still counts milliseconds"
        );
        assert_eq!(agent_run(&[]).expect("defaults").lease, None);

        let t = server(&[
            "--heartbeat-interval",
            "20",
            "--ack-timeout",
            "500ms",
            "--pending-ttl",
            "86400",
            "--command-deadline",
            "5m",
            "--sweep-interval",
            "250ms",
            "--viewer-open-timeout",
            "3",
        ])
        .expect("server durations");
        assert_eq!(t.heartbeat_interval, ms(20_000));
        assert_eq!(t.ack_timeout, ms(500));
        assert_eq!(t.pending_ttl, ms(86_400_000));
        assert_eq!(t.command_deadline, ms(300_000));
        assert_eq!(t.sweep_interval, ms(250));
        assert_eq!(t.viewer_open_timeout, ms(3_000));

        let cli = Cli::try_parse_from([
            "streamspace",
            "template",
            "create",
            "t",
            "--image",
            "i",
            "--idle-timeout-secs",
            "900",
        ])
        .expect("the old idle-timeout flag");
        let Command::Template(TemplateCommand::Create { runtime, .. }) = cli.command else {
            panic!("expected template create");
        };
        assert_eq!(runtime.idle_timeout, Some(ms(900_000)));
    }

    #[test]
    fn user_homes_are_chosen_on_templates_and_on_user_deletion() {
        use streamspace_proto::api::{HomeDisposal, HomePolicy};
        let cli = Cli::try_parse_from([
            "streamspace",
            "template",
            "create",
            "t",
            "--command",
            "xterm",
            "--persistent-home",
            "user",
        ])
        .expect("a user home");
        let Command::Template(TemplateCommand::Create { runtime, .. }) = cli.command else {
            panic!("expected template create");
        };
        assert_eq!(runtime.persistent_home, HomePolicy::User);
        let cli = Cli::try_parse_from(["streamspace", "user", "delete", "alice", "--home", "keep"])
            .expect("a home choice");
        let Command::User(crate::cli_identity::UserCommand::Delete { home, .. }) = cli.command
        else {
            panic!("expected user delete");
        };
        assert_eq!(home, Some(HomeDisposal::Keep));
        refused(
            Cli::try_parse_from(["streamspace", "user", "delete", "a", "--home", "maybe"]),
            "--home",
        );
    }

    #[test]
    fn invalid_values_are_refused_naming_the_flag() {
        refused(agent_run(&["--lease-secs", "1"]), "--lease");
        refused(agent_run(&["--lease", "3500ms"]), "--lease");
        refused(agent_run(&["--lease", "11m"]), "--lease");
        refused(agent_run(&["--ha-retry-ms", "5"]), "--ha-retry");
        refused(
            agent_run(&["--max-concurrent-commands", "0"]),
            "--max-concurrent-commands",
        );
        let text = refused(server(&["--ack-timeout", "5x"]), "--ack-timeout");
        assert!(text.contains("unknown unit"), "{text}");
        refused(server(&["--ack-timeout", "0"]), "--ack-timeout");
        refused(
            server(&["--heartbeat-interval", "1500ms"]),
            "--heartbeat-interval",
        );
        refused(server(&["--pending-ttl", "400d"]), "--pending-ttl");
        refused(
            server(&["--dispatcher-workers", "0"]),
            "--dispatcher-workers",
        );
        refused(server(&["--max-attempts", "0"]), "--max-attempts");
        refused(
            server(&["--max-agent-connections", "0"]),
            "--max-agent-connections",
        );
        refused(server(&["--max-body-bytes", "10"]), "--max-body-bytes");
        refused(
            server(&["--max-viewer-streams", "0"]),
            "--max-viewer-streams",
        );
        refused(
            Cli::try_parse_from(["streamspace", "agent", "ping", "a1", "--wait", "2m"]),
            "--wait",
        );
    }
}
