//! `streamspace server`: one control-plane replica.

use anyhow::Context;
use streamspace_proto::api::QuotaLimits;
use streamspace_server::{HttpConfig, ListenerTls, MetricsToken, RetentionConfig};
use streamspace_server::{RecordingConfig, RecordingStoreConfig};
use streamspace_server::{RedisConfig, SecretsConfig, ServerConfig};
use streamspace_store::SessionSize;
use tokio_util::sync::CancellationToken;

use crate::cli::{RecordingArgs, ServerArgs, ServerTlsArgs, ServerTuning};
use crate::secrets;

/// Connections the kernel may queue for `accept` (it caps this at `net.core.somaxconn`). With
/// tokio's default of 1024 the listen queue overflowed when the 5,000 agents of a killed replica
/// all reconnected to one survivor within the agent's first backoff (250 ms; `agents` benchmark,
/// kernel counter `ListenOverflows`), and each dropped SYN costs its agent a retry a second or
/// more later.
const LISTEN_BACKLOG: u32 = 8192;

/// Listens on `listen` (`HOST:PORT`) with [`LISTEN_BACKLOG`].
async fn bind(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{listen} names no address"),
        )
    }))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let replica_id = args.replica_id.clone().unwrap_or_else(default_replica_id);
    let oidc = crate::sso::providers(&args.oidc).context("configuring single sign-on")?;
    let redis = redis_config(&args)?;
    if args.no_migrate {
        let pending: Vec<i64> = streamspace_store::migrate::status(&args.database_url)
            .await
            .context("reading the database's migration status")?
            .into_iter()
            .filter(|m| m.state == streamspace_store::MigrationState::Pending)
            .map(|m| m.version)
            .collect();
        if !pending.is_empty() {
            anyhow::bail!(
                "the database schema is not up to date (pending migrations: {pending:?}); \
                 run `streamspace migrate up --database-url …` or start without --no-migrate"
            );
        }
    } else {
        let applied = streamspace_store::migrate::up(&args.database_url)
            .await
            .context("applying database migrations (use --no-migrate to skip)")?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied migrations");
        }
    }
    let store = streamspace_store::open_with_pool(&args.database_url, args.database_pool_size)
        .await
        .context("opening the database")?;
    let env_token = std::env::var("STREAMSPACE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    // A generated admin token goes to a file only: printed, it would sit in the pod log.
    let token_path = admin_token_path(args.data_dir.as_deref());
    let saved_to = token_path.as_ref().ok().cloned();
    let secrets = SecretsConfig {
        master_secret_file: args.master_secret_file.clone(),
        previous_master_secret_file: args.previous_master_secret_file.clone(),
    };
    let new_token = streamspace_server::bootstrap_saving(
        store.as_ref(),
        &secrets,
        env_token.as_deref(),
        |token| save_admin_token(token_path, token),
    )
    .await
    .context("bootstrapping the control plane")?;
    if let (Some(_), Some(path)) = (new_token, saved_to) {
        println!(
            "Generated the first admin token; it is in {} (readable by this user only). \
             It is shown nowhere else: keep a copy, or set STREAMSPACE_ADMIN_TOKEN.",
            path.display()
        );
    }
    let listener = bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, %replica_id, backend = store.backend(), "control plane listening");
    let scheme = if args.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    println!("StreamSpace control plane {replica_id} listening on {scheme}://{addr}");
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        super::stop_signal().await;
        tracing::info!("stopping");
        stopper.cancel();
    });
    let mut config = ServerConfig {
        redis,
        internal_address: args.internal_address.clone(),
        oidc,
        secrets,
        ..server_config(replica_id, &args.tuning)
    };
    apply_tls(&mut config, &args.tls);
    config.http.metrics_token = metrics_token(&args.tuning)?;
    config.recording = recording_config(&args.recording)?;
    streamspace_server::serve(listener, store, config, shutdown)
        .await
        .context("control plane stopped with an error")
}

/// Where a generated admin token is written: DIR/admin-token of `--data-dir`, else of the
/// default data directory (`$STREAMSPACE_DATA_DIR`, else the user's data directory).
fn admin_token_path(data_dir: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    let dir = match data_dir {
        Some(dir) => dir.to_path_buf(),
        None => secrets::default_data_dir()?,
    };
    Ok(dir.join("admin-token"))
}

/// Writes a generated admin token to `path` (mode 0600), creating its directory.
fn save_admin_token(path: anyhow::Result<std::path::PathBuf>, token: &str) -> std::io::Result<()> {
    let path = path.map_err(|e| {
        std::io::Error::other(format!(
            "{e:#}; a generated admin token is only ever written to a file: \
             pass --data-dir, or set STREAMSPACE_ADMIN_TOKEN"
        ))
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    secrets::write(&path, token).map_err(|e| std::io::Error::other(format!("{e:#}")))
}

/// The replica's configuration from its flags, which the CLI has already range-checked.
pub fn server_config(replica_id: String, t: &ServerTuning) -> ServerConfig {
    let count = |n: u32| usize::try_from(n).expect("a u32 fits in usize on supported targets");
    ServerConfig {
        replica_id,
        heartbeat_interval: t.heartbeat_interval,
        dispatcher_workers: count(t.dispatcher_workers),
        ack_timeout: t.ack_timeout,
        max_attempts: t.max_attempts,
        stuck_after: t.command_deadline,
        pending_ttl: t.pending_ttl,
        sweep_interval: t.sweep_interval,
        max_body_bytes: count(t.max_body_bytes),
        max_agent_connections: count(t.max_agent_connections),
        tunnel: streamspace_server::TunnelConfig {
            send_timeout: t.viewer_send_timeout,
            close_grace: t.viewer_close_grace,
            viewer_token_ttl: t.viewer_token_ttl,
            open_timeout: t.viewer_open_timeout,
            max_streams: count(t.max_viewer_streams),
            public_url: t.public_url.clone(),
        },
        credential_cache_ttl: t.credential_cache_ttl,
        trusted_proxies: t.trusted_proxies.clone(),
        default_quota: QuotaLimits {
            max_sessions: t.default_max_sessions,
            max_cpu_millis: t.default_max_cpu_millis,
            max_memory_mib: t.default_max_memory_mib,
        },
        default_session_size: SessionSize {
            cpu_millis: t.default_session_cpu_millis,
            memory_mib: t.default_session_memory_mib,
        },
        shared_user_homes: t.shared_user_homes,
        session_rules: streamspace_proto::api::EffectiveRules {
            clipboard: t.clipboard_policy,
            clipboard_max_bytes: t.clipboard_max_bytes,
            file_transfer: t.file_transfer_policy,
            transfer_max_bytes: t.transfer_max_bytes,
            recording: t.recording_policy,
        },
        http: HttpConfig {
            header_read_timeout: t.header_read_timeout,
            request_timeout: t.request_timeout,
            max_connections: count(t.max_connections),
            https: t
                .public_url
                .as_deref()
                .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://")),
            metrics_listen: t.metrics_listen.clone(),
            // Read by `run`, which can fail; see `metrics_token`.
            metrics_token: None,
        },
        retention: RetentionConfig {
            commands: t.command_retention.0,
            sessions: t.session_retention.0,
            audit: t.audit_retention.0,
            recordings: t.recording_retention.0,
            ..RetentionConfig::default()
        },
        ..ServerConfig::default()
    }
}

/// The recording flags, with the S3 secret read from its file.
pub fn recording_config(args: &RecordingArgs) -> anyhow::Result<RecordingConfig> {
    let store = match args.recording_store.clone() {
        Some(RecordingStoreConfig::S3(mut s3)) => {
            s3.endpoint = args.s3_endpoint.clone();
            s3.region = args.s3_region.clone();
            s3.access_key_id = args.s3_access_key_id.clone();
            s3.secret_access_key = args
                .s3_secret_access_key_file
                .as_deref()
                .map(|p| secrets::read_required(p, "the S3 secret access key"))
                .transpose()?;
            Some(RecordingStoreConfig::S3(s3))
        }
        other => other,
    };
    Ok(RecordingConfig { store })
}

/// `--redis-url` with the credentials from the Redis password files; `None` without a URL.
fn redis_config(args: &ServerArgs) -> anyhow::Result<Option<RedisConfig>> {
    let Some(url) = args.redis_url.clone().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let read = |path: &Option<std::path::PathBuf>, what| {
        path.as_deref()
            .map(|p| secrets::read_required(p, what))
            .transpose()
    };
    Ok(Some(RedisConfig {
        url,
        password: read(&args.redis_password_file, "the Redis password")?,
        sentinel_username: args.redis_sentinel_username.clone(),
        sentinel_password: read(
            &args.redis_sentinel_password_file,
            "the Redis Sentinel password",
        )?,
    }))
}

/// The TLS flags into `config`: the listener's certificate and client CA, and what the
/// replica's own calls trust.
fn apply_tls(config: &mut ServerConfig, tls: &ServerTlsArgs) {
    config.tls = tls
        .tls_cert
        .clone()
        .zip(tls.tls_key.clone())
        .map(|(cert, key)| ListenerTls {
            cert,
            key,
            client_ca: tls.client_ca.clone(),
            require_agent_certs: tls.require_agent_certs,
        });
    config.ca_cert = tls.ca_cert.clone();
    config.internal_tls_name = tls.internal_tls_name.clone();
}

/// The token of `--metrics-token-file`, trimmed; an empty file is refused.
fn metrics_token(t: &ServerTuning) -> anyhow::Result<Option<MetricsToken>> {
    let Some(path) = &t.metrics_token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the metrics token from {}", path.display()))?;
    let token = token.trim();
    if token.is_empty() {
        anyhow::bail!("the metrics token file {} is empty", path.display());
    }
    Ok(Some(MetricsToken(token.to_owned())))
}

/// `POD_NAME` (set from the Kubernetes downward API), else the hostname.
fn default_replica_id() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "streamspace".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["streamspace", "server", "--database-url", "sqlite:x"])
            .expect("server parses with defaults");
        let Command::Server(args) = cli.command else {
            panic!("expected the server command");
        };
        let from_flags = server_config("r1".to_owned(), &args.tuning);
        let library = ServerConfig {
            replica_id: "r1".to_owned(),
            ..ServerConfig::default()
        };
        assert_eq!(
            format!("{from_flags:?}"),
            format!("{library:?}"),
            "a flag's default differs from ServerConfig::default()"
        );
    }
}
