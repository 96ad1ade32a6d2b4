//! `streamspace up`: the whole platform on one machine, in one process.
//!
//! The control plane runs on SQLite in the data directory and a local agent with the `process`
//! runtime connects to it over a real WebSocket, exactly as a remote agent would. It serves
//! plain HTTP (on loopback by default) unless given `--tls-cert`/`--tls-key`; its agent then
//! trusts that certificate. Sessions
//! outlive the process: the next `up` re-adopts the ones still running.
//!
//! The first start generates the admin token (for the CLI and automation) and a password for
//! the bootstrap `admin` user (for the web UI), saves both in the data directory (mode 0600), and
//! every start prints the password and where the token is (never the token itself).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use rand::distr::Alphanumeric;
use streamspace_agent::{AgentConfig, RuntimeKind};
use streamspace_server::{ListenerTls, ServerConfig};
use streamspace_store::{ApiKeyKind, BOOTSTRAP_ADMIN_ID, Store};
use tokio_util::sync::CancellationToken;

use super::local_machine::{self, DesktopTemplate};
use crate::cli::UpArgs;
use crate::secrets;

/// The id of the agent `up` runs beside the control plane.
const LOCAL_AGENT_ID: &str = "local";
/// Length of the generated admin password (letters and digits: about 119 bits).
const ADMIN_PASSWORD_CHARS: usize = 20;

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => secrets::default_data_dir()?,
    };
    // Private to its owner: it holds the database, the admin token and the sessions' state.
    streamspace_agent::private_dir::ensure(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let db_url = format!("sqlite://{}", data_dir.join("streamspace.db").display());
    streamspace_store::migrate::up(&db_url)
        .await
        .context("preparing the embedded database")?;
    let store = streamspace_store::open(&db_url)
        .await
        .context("opening the embedded database")?;

    let token_path = data_dir.join("admin-token");
    admin_token(store.as_ref(), &token_path).await?;
    let password_path = data_dir.join("admin-password");
    let password = admin_password(store.as_ref(), &password_path).await?;
    let agent_key = fresh_local_agent_key(store.as_ref()).await?;
    let path = std::env::var_os("PATH");
    let missing = local_machine::missing(path.as_deref());
    let desktop = local_machine::seed_desktop_template(store.as_ref(), path.as_deref())
        .await
        .context("offering the desktop template")?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another `streamspace up` running? use --listen)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let tls = args
        .tls_cert
        .clone()
        .zip(args.tls_key.clone())
        .map(|(cert, key)| ListenerTls {
            cert,
            key,
            client_ca: None,
            require_agent_certs: false,
        });
    let (url, agent_url) = urls(addr, tls.is_some());

    let shutdown = CancellationToken::new();
    let config = ServerConfig {
        replica_id: "local".to_owned(),
        tls: tls.clone(),
        recording: streamspace_server::RecordingConfig {
            store: Some(streamspace_server::RecordingStoreConfig::Dir(
                data_dir.join("recordings"),
            )),
        },
        // Where no template or group says otherwise.
        session_rules: streamspace_proto::api::EffectiveRules {
            recording: args.recording_policy,
            ..streamspace_server::DEFAULT_RULES
        },
        ..ServerConfig::default()
    };
    let mut server = tokio::spawn(streamspace_server::serve(
        listener,
        store,
        config,
        shutdown.child_token(),
    ));
    let mut agent_config = AgentConfig::new(
        vec![agent_url],
        LOCAL_AGENT_ID.to_owned(),
        agent_key,
        data_dir.join("agent"),
    );
    agent_config.runtime = RuntimeKind::Process;
    agent_config.max_sessions = args.max_sessions;
    // The built-in agent trusts the certificate it is served (self-signed or not).
    agent_config.tls.ca_cert = tls.map(|tls| tls.cert);
    let mut agent = tokio::spawn(streamspace_agent::run(agent_config, shutdown.child_token()));

    print_banner(&Banner {
        url: &url,
        token_path: &token_path,
        password: password.as_deref(),
        password_path: &password_path,
        data_dir: &data_dir,
        missing: &missing,
        desktop: &desktop,
        tls_cert: args.tls_cert.as_deref(),
    });

    tokio::select! {
        _ = super::stop_signal() => {}
        result = &mut server => {
            shutdown.cancel();
            result.context("control plane task")?.context("control plane stopped")?;
        }
        result = &mut agent => {
            shutdown.cancel();
            result.context("agent task")?.context("local agent stopped")?;
        }
    }
    eprintln!("Stopping (sessions keep running and are re-adopted by the next `streamspace up`)…");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = server.await;
        let _ = agent.await;
    })
    .await;
    Ok(())
}

/// The URL `up` prints, and the one its built-in agent dials: `127.0.0.1` when listening on
/// every address; over TLS, `localhost` when listening on loopback or every address, so that
/// the certificate must name `localhost` (or the `--listen` address otherwise).
fn urls(addr: std::net::SocketAddr, tls: bool) -> (String, String) {
    if !tls {
        let url = format!("http://{addr}");
        if addr.ip().is_unspecified() {
            return (url, format!("http://127.0.0.1:{}", addr.port()));
        }
        return (url.clone(), url);
    }
    let url = format!("https://{addr}");
    let ip = addr.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        (url, format!("https://localhost:{}", addr.port()))
    } else {
        (url.clone(), url)
    }
}

/// Makes sure an admin token is saved in the data directory: the one saved there, or a new one
/// on the first start (written to the file before it is stored).
async fn admin_token(store: &dyn Store, path: &Path) -> anyhow::Result<()> {
    let saved = secrets::read(path)?;
    let generated = streamspace_server::bootstrap_saving(
        store,
        &Default::default(),
        saved.as_deref(),
        |token| secrets::write(path, token).map_err(|e| std::io::Error::other(format!("{e:#}"))),
    )
    .await
    .context("bootstrapping the control plane")?;
    if saved.is_none() && generated.is_none() {
        anyhow::bail!(
            "the database already has an admin token but {} is missing; \
             start with a fresh --data-dir or restore the file",
            path.display()
        );
    }
    Ok(())
}

/// The bootstrap admin's web UI password: the one saved in the data directory, or a new one on
/// the first start. It is set on the `admin` user only while that user has no password, so a
/// password the admin changed later is never overwritten (`None`: no saved password to show).
async fn admin_password(store: &dyn Store, path: &Path) -> anyhow::Result<Option<String>> {
    let saved = secrets::read(path)?;
    let has_password = store
        .get_user_by_id(BOOTSTRAP_ADMIN_ID)
        .await
        .context("reading the bootstrap admin user")?
        .password_hash
        .is_some();
    if has_password {
        return Ok(saved);
    }
    let password = match saved {
        Some(password) => password,
        None => {
            let password: String = rand::rng()
                .sample_iter(Alphanumeric)
                .take(ADMIN_PASSWORD_CHARS)
                .map(char::from)
                .collect();
            // Saved before it is set, so that no password is ever set that nobody can read.
            secrets::write(path, &password)?;
            password
        }
    };
    streamspace_server::set_bootstrap_admin_password(store, &password)
        .await
        .with_context(|| format!("setting the admin password from {}", path.display()))?;
    Ok(Some(password))
}

/// The local agent's key lives only in memory: each start revokes the previous ones and makes a
/// new one, so no agent secret sits on disk.
async fn fresh_local_agent_key(store: &dyn Store) -> anyhow::Result<String> {
    for key in store.list_api_keys(ApiKeyKind::Agent).await? {
        if key.agent_id.as_deref() == Some(LOCAL_AGENT_ID) && key.revoked_at.is_none() {
            let entry = streamspace_store::AuditEntry::system(
                "agent_key.revoke",
                key.id.to_string(),
                serde_json::json!({}),
            );
            store.revoke_api_key(key.id, &entry).await?;
        }
    }
    let created = streamspace_server::create_agent_key(store, LOCAL_AGENT_ID)
        .await
        .context("creating the local agent's key")?;
    Ok(created.secret)
}

/// What `up` prints once it is listening.
struct Banner<'a> {
    url: &'a str,
    token_path: &'a Path,
    password: Option<&'a str>,
    password_path: &'a Path,
    data_dir: &'a Path,
    /// What the machine lacks for sessions, one line each.
    missing: &'a [String],
    desktop: &'a DesktopTemplate,
    /// The certificate served, which clients may need to be told to trust.
    tls_cert: Option<&'a Path>,
}

fn print_banner(b: &Banner<'_>) {
    let url = b.url;
    if !b.missing.is_empty() {
        println!("This machine cannot run sessions yet:");
        for line in b.missing {
            println!("  - {line}");
        }
        println!("  (install them, then start sessions; `streamspace up` installs nothing)");
        println!();
    }
    println!("StreamSpace is up.");
    println!("  URL:          {url}");
    // The token itself is never printed: terminals are recorded and shared more than files.
    println!("  Admin token:  in {}", b.token_path.display());
    println!("                (client commands on this machine find it there)");
    println!("  Data:         {}", b.data_dir.display());
    println!("  Local agent:  {LOCAL_AGENT_ID} (process runtime)");
    println!();
    match b.password {
        Some(password) => println!(
            "Sign in at {url} as admin with password {password} (saved in {}; if you have \
             changed it since, use yours).",
            b.password_path.display()
        ),
        None => println!("Sign in at {url} as admin with the password you set."),
    }
    match b.desktop {
        DesktopTemplate::Seeded(name) => println!(
            "A `{}` template runs {name} for a whole desktop.",
            local_machine::DESKTOP_TEMPLATE
        ),
        DesktopTemplate::AlreadyOffered => {}
        DesktopTemplate::NoWindowManager => println!(
            "For a whole desktop, not only a terminal, install a window manager (apt-get install \
             {}) and start again.",
            local_machine::SUGGESTED_DESKTOP_PACKAGE
        ),
    }
    let trust = b
        .tls_cert
        .map(|cert| format!(" --ca-cert {}", cert.display()))
        .unwrap_or_default();
    println!("Try:  streamspace session create xterm --wait --server {url}{trust}");
    println!("Press Ctrl-C to stop.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_agent_dials_localhost_over_tls() {
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().expect("an address");
        assert_eq!(
            urls(addr("127.0.0.1:8080"), false),
            (
                "http://127.0.0.1:8080".into(),
                "http://127.0.0.1:8080".into()
            )
        );
        assert_eq!(
            urls(addr("0.0.0.0:8080"), false).1,
            "http://127.0.0.1:8080",
            "a plain URL the agent accepts without --allow-insecure"
        );
        assert_eq!(
            urls(addr("0.0.0.0:8443"), true),
            (
                "https://0.0.0.0:8443".into(),
                "https://localhost:8443".into()
            )
        );
        assert_eq!(
            urls(addr("192.0.2.7:8443"), true).1,
            "https://192.0.2.7:8443"
        );
    }
}
