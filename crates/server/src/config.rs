//! The server's typed configuration, built by the CLI and passed down explicitly.
//!
//! Every liveness timeout derives from one number, [`ServerConfig::heartbeat_interval`]: an agent
//! that sends nothing for three intervals is dead, whichever part of the server notices first.

use std::path::PathBuf;
use std::time::Duration;

use streamspace_proto::api::{
    ClipboardPolicy, EffectiveRules, QuotaLimits, RecordingPolicy, TransferPolicy,
};
use streamspace_store::SessionSize;

/// Configuration of one control-plane replica.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name of this replica, recorded as the owner of the agents it holds.
    pub replica_id: String,
    /// How often agents send a heartbeat; an agent is dead after three intervals without a message.
    pub heartbeat_interval: Duration,
    /// Most commands delivered concurrently.
    pub dispatcher_workers: usize,
    /// How long a sent command may go unacknowledged before it is sent again; attempt `n` waits
    /// `ack_timeout · 2^(n-1)`.
    pub ack_timeout: Duration,
    /// Most delivery attempts of one command.
    pub max_attempts: i32,
    /// A `sent`/`acknowledged` command not updated for this long is failed.
    pub stuck_after: Duration,
    /// A command still `pending` (its agent offline) after this long is failed.
    pub pending_ttl: Duration,
    /// How often the dispatcher sweeps the database for work it was not woken for, and the
    /// replica checks that the sessions of its viewers still run.
    pub sweep_interval: Duration,
    /// Largest accepted REST request body.
    pub max_body_bytes: usize,
    /// Most agent WebSocket connections held at once.
    pub max_agent_connections: usize,
    /// Redis shared by the replicas; without it the hub is in memory and only this replica's
    /// agents are reachable.
    pub redis: Option<RedisConfig>,
    /// Where other replicas reach this one (`host:port`); defaults to the listen address.
    pub internal_address: Option<String>,
    /// Serve TLS on the listener (`--tls-cert`/`--tls-key`); `None`: plain HTTP. Other
    /// replicas then call this one over https/wss.
    pub tls: Option<ListenerTls>,
    /// A PEM bundle of CA certificates trusted by this replica's own connections
    /// (`--ca-cert`): besides the system's roots for other replicas and OpenID providers;
    /// instead of the public web roots for `rediss://`.
    pub ca_cert: Option<PathBuf>,
    /// The name this replica verifies other replicas' certificates against, instead of the
    /// host of their internal address (usually a pod IP): e.g. the name of the Service all
    /// replicas' certificate carries (`--internal-tls-name`). `None`: the address's host,
    /// which must then be on the certificate (an IP SAN for an IP).
    pub internal_tls_name: Option<String>,
    /// Viewer streams (timeouts, token lifetime, public URL).
    pub tunnel: TunnelConfig,
    /// How long a replica trusts a credential it resolved without asking the database again.
    /// Revocations on any replica are announced over Redis at once; this bounds how late one
    /// that was missed (Redis away) takes effect.
    pub credential_cache_ttl: Duration,
    /// Proxies (load balancers, ingress controllers) whose `X-Forwarded-For` is believed: a
    /// request from one of these names its client there. From anyone else the header is
    /// ignored, so clients cannot choose the address the audit log and sign-in throttle see.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Limits for users whose own and groups' limits leave a dimension unset (`None`:
    /// unlimited). See `streamspace_proto::api::QuotaLimits::effective`.
    pub default_quota: QuotaLimits,
    /// What a session counts against a quota when its template sets no CPU or memory, so such
    /// templates cannot slip past a CPU or memory limit.
    pub default_session_size: SessionSize,
    /// Clipboard, file-transfer and recording rules where no template or group says anything.
    pub session_rules: EffectiveRules,
    /// Connection limits, timeouts and headers of the HTTP server.
    pub http: HttpConfig,
    /// How long finished commands, ended sessions and audit entries are kept.
    pub retention: RetentionConfig,
    /// Single sign-on providers (OpenID Connect), each a button on the sign-in page. They need
    /// `tunnel.public_url`, which their redirect URIs are built from.
    pub oidc: Vec<crate::oidc::OidcProviderConfig>,
    /// Where the master secret (and, during a rotation, the previous one) comes from.
    pub secrets: crate::keyring::SecretsConfig,
}

/// How a replica reaches Redis, part of [`ServerConfig`]. Its `Debug` hides the passwords.
#[derive(Clone, Default)]
pub struct RedisConfig {
    /// `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]`, `rediss://…` (TLS), or
    /// `redis+sentinel://[USER[:PASSWORD]@]HOST[:PORT][,…]/MASTER` (`rediss+sentinel://` for TLS
    /// to the Sentinels and the master). The user-info is the data nodes' credential.
    pub url: String,
    /// The data nodes' password, for a URL that holds none (`--redis-password-file`).
    pub password: Option<String>,
    /// The Sentinels' own ACL user, if they have one (none: `default`).
    pub sentinel_username: Option<String>,
    /// The Sentinels' own password (their `requirepass`), separate from the data nodes'.
    pub sentinel_password: Option<String>,
}

impl RedisConfig {
    /// Redis at `url`, with no credential besides what the URL holds.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| streamspace_store::REDACTED);
        f.debug_struct("RedisConfig")
            .field("url", &streamspace_store::redact_url(&self.url))
            .field("password", &hidden(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &hidden(&self.sentinel_password))
            .finish()
    }
}

/// The listener's TLS, part of [`ServerConfig`] (see the `tls` module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM certificate chain, re-read when it changes.
    pub cert: PathBuf,
    /// PEM private key, re-read when it changes.
    pub key: PathBuf,
    /// Ask clients for a certificate from these CAs (never required of browsers or the CLI).
    pub client_ca: Option<PathBuf>,
    /// Refuse agent connections (control and data) without a client certificate verified
    /// against `client_ca`, in addition to the agent key.
    pub require_agent_certs: bool,
}

/// How long history is kept, part of [`ServerConfig`]; `None` keeps it for ever.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Completed or failed commands older than this are deleted.
    pub commands: Option<Duration>,
    /// Terminated or failed sessions (with their commands) older than this are deleted.
    pub sessions: Option<Duration>,
    /// Audit entries older than this are deleted.
    pub audit: Option<Duration>,
    /// How often a replica looks for rows to delete.
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            commands: Some(Duration::from_secs(30 * DAY)),
            sessions: Some(Duration::from_secs(30 * DAY)),
            audit: Some(Duration::from_secs(90 * DAY)),
            interval: Duration::from_secs(60),
        }
    }
}

/// What applies where no template or group says anything, unless flags say otherwise:
/// clipboard both ways up to 1 MiB, transfers both ways up to 1 GiB, no recording.
pub const DEFAULT_RULES: EffectiveRules = EffectiveRules {
    clipboard: ClipboardPolicy::Both,
    clipboard_max_bytes: 1024 * 1024,
    file_transfer: TransferPolicy::Both,
    transfer_max_bytes: 1024 * 1024 * 1024,
    recording: RecordingPolicy::Off,
};

/// [`ServerConfig::default_session_size`] unless configured: one core and 2 GiB.
pub const DEFAULT_SESSION_SIZE: SessionSize = SessionSize {
    cpu_millis: 1000,
    memory_mib: 2048,
};

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            replica_id: "local".to_owned(),
            heartbeat_interval: Duration::from_secs(10),
            dispatcher_workers: 10,
            ack_timeout: Duration::from_secs(5),
            max_attempts: 5,
            stuck_after: Duration::from_secs(120),
            pending_ttl: Duration::from_secs(24 * 60 * 60),
            sweep_interval: Duration::from_secs(1),
            max_body_bytes: 1024 * 1024,
            max_agent_connections: 10_000,
            redis: None,
            internal_address: None,
            tls: None,
            ca_cert: None,
            internal_tls_name: None,
            tunnel: TunnelConfig::default(),
            credential_cache_ttl: Duration::from_secs(1),
            trusted_proxies: Vec::new(),
            default_quota: QuotaLimits::default(),
            default_session_size: DEFAULT_SESSION_SIZE,
            session_rules: DEFAULT_RULES,
            http: HttpConfig::default(),
            retention: RetentionConfig::default(),
            oidc: Vec::new(),
            secrets: crate::keyring::SecretsConfig::default(),
        }
    }
}

/// Settings of the tunnel (viewer streams), part of [`ServerConfig`].
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// How long a viewer token stays valid after `connect`.
    pub viewer_token_ttl: Duration,
    /// How long one send to a viewer (or to the agent) may take before the stream is closed
    /// (1013 to the viewer).
    pub send_timeout: Duration,
    /// How long the agent has to dial its data connection after `tunnel_open`.
    pub open_timeout: Duration,
    /// How long a closing viewer is given to take its close frame.
    pub close_grace: Duration,
    /// Most viewer streams (open or waiting for their agent) this replica holds at once; more
    /// are refused with 503 `too_many_streams`.
    pub max_streams: usize,
    /// Base URL browsers use to reach the control plane (`https://streamspace.example`); the
    /// `url` of `connect` is built from it. Without it, from the request's `Host` header.
    pub public_url: Option<String>,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            viewer_token_ttl: Duration::from_secs(60),
            send_timeout: Duration::from_secs(10),
            open_timeout: Duration::from_secs(10),
            close_grace: Duration::from_secs(10),
            max_streams: 10_000,
            public_url: None,
        }
    }
}

/// Limits of the HTTP server (see the `http` module), part of [`ServerConfig`].
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// How long a client may take to send a request's header, counted from when the
    /// connection is ready for it (so also how long an idle keep-alive connection is kept).
    pub header_read_timeout: Duration,
    /// How long a request may take to be answered (long polls and WebSocket upgrades exempt).
    pub request_timeout: Duration,
    /// Most connections (API clients, browsers, agents, viewers) served at once.
    pub max_connections: usize,
    /// Whether the UI is served over https by a proxy: adds `Strict-Transport-Security`
    /// (as does serving TLS directly, [`ServerConfig::tls`]).
    pub https: bool,
    /// Where `/metrics` is served: beside the API (default) or on a listener of its own.
    pub metrics_listen: Option<String>,
    /// A token `/metrics` requires (`Authorization: Bearer …`); `None`: open.
    pub metrics_token: Option<MetricsToken>,
}

/// The secret `/metrics` asks for; never printed.
#[derive(Clone)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(…)")
    }
}

impl MetricsToken {
    /// Whether the request's Bearer token is this one (compared in constant time).
    pub(crate) fn admits(&self, headers: &axum::http::HeaderMap) -> bool {
        use subtle::ConstantTimeEq;
        let offered = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        bool::from(offered.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 25_000,
            https: false,
            metrics_listen: None,
            metrics_token: None,
        }
    }
}

impl ServerConfig {
    /// After this long without any message from an agent, its connection is dead (3 heartbeats).
    pub fn liveness_timeout(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(3)
    }

    /// The heartbeat interval as told to agents in `welcome`: whole seconds, rounded up, so at
    /// least one for any interval the server accepts (it refuses zero).
    pub fn heartbeat_interval_secs(&self) -> u64 {
        let d = self.heartbeat_interval;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }

    /// Rejects settings the server cannot run with. The CLI refuses such values already, naming
    /// the flag; this guards configurations built in code.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.replica_id.trim().is_empty() {
            return Err(ConfigError::EmptyReplicaId);
        }
        let durations = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("ack_timeout", self.ack_timeout),
            ("stuck_after", self.stuck_after),
            ("pending_ttl", self.pending_ttl),
            ("sweep_interval", self.sweep_interval),
            ("tunnel.viewer_token_ttl", self.tunnel.viewer_token_ttl),
            ("tunnel.send_timeout", self.tunnel.send_timeout),
            ("tunnel.open_timeout", self.tunnel.open_timeout),
            ("tunnel.close_grace", self.tunnel.close_grace),
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.request_timeout", self.http.request_timeout),
            ("retention.interval", self.retention.interval),
        ];
        if let Some((name, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::NotPositive(name));
        }
        let counts = [
            ("dispatcher_workers", self.dispatcher_workers),
            ("max_body_bytes", self.max_body_bytes),
            ("max_agent_connections", self.max_agent_connections),
            ("tunnel.max_streams", self.tunnel.max_streams),
            ("http.max_connections", self.http.max_connections),
            (
                "default_session_size.cpu_millis",
                self.default_session_size.cpu_millis as usize,
            ),
            (
                "default_session_size.memory_mib",
                self.default_session_size.memory_mib as usize,
            ),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::BelowOne(name));
        }
        if self.max_attempts < 1 {
            return Err(ConfigError::BelowOne("max_attempts"));
        }
        if let Some(tls) = &self.tls
            && tls.require_agent_certs
            && tls.client_ca.is_none()
        {
            return Err(ConfigError::AgentCertsWithoutClientCa);
        }
        Ok(())
    }
}

/// A [`ServerConfig`] the server cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("replica_id must not be empty")]
    EmptyReplicaId,
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    #[error("{0} must be at least 1")]
    BelowOne(&'static str),
    #[error("requiring agent certificates needs a client CA to verify them against")]
    AgentCertsWithoutClientCa,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_derives_from_the_heartbeat() {
        let config = ServerConfig {
            heartbeat_interval: Duration::from_millis(400),
            ..ServerConfig::default()
        };
        assert_eq!(config.liveness_timeout(), Duration::from_millis(1200));
        assert_eq!(
            config.heartbeat_interval_secs(),
            1,
            "agents are told whole seconds"
        );
        assert_eq!(ServerConfig::default().heartbeat_interval_secs(), 10);
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn zero_limits_are_refused_naming_the_setting() {
        let bad = ServerConfig {
            dispatcher_workers: 0,
            ..ServerConfig::default()
        };
        assert_eq!(
            bad.validate(),
            Err(ConfigError::BelowOne("dispatcher_workers"))
        );
        let bad = ServerConfig {
            max_body_bytes: 0,
            ..ServerConfig::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::BelowOne("max_body_bytes")));
        let mut bad = ServerConfig::default();
        bad.tunnel.open_timeout = Duration::ZERO;
        assert_eq!(
            bad.validate().map_err(|e| e.to_string()),
            Err("tunnel.open_timeout must be positive".to_owned())
        );
        let bad = ServerConfig {
            replica_id: " ".to_owned(),
            ..ServerConfig::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::EmptyReplicaId));
        let mut bad = ServerConfig::default();
        bad.default_session_size.memory_mib = 0;
        assert_eq!(
            bad.validate(),
            Err(ConfigError::BelowOne("default_session_size.memory_mib")),
            "a zero default size would let templates without resources past a quota"
        );
    }

    #[test]
    fn agents_are_told_the_heartbeat_rounded_up() {
        let with = |ms| ServerConfig {
            heartbeat_interval: Duration::from_millis(ms),
            ..ServerConfig::default()
        };
        assert_eq!(with(1).heartbeat_interval_secs(), 1);
        assert_eq!(with(2_000).heartbeat_interval_secs(), 2);
        assert_eq!(with(2_001).heartbeat_interval_secs(), 3);
    }
}
