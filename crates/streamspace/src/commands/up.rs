//! `streamspace up`: the whole platform on one machine, in one process.
//!
//! The control plane runs on SQLite in the data directory and a local agent with the `process`
//! runtime connects to it over a real WebSocket, exactly as a remote agent would. Sessions
//! outlive the process: the next `up` re-adopts the ones still running.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use streamspace_agent::{AgentConfig, RuntimeKind};
use streamspace_server::ServerConfig;
use streamspace_store::{ApiKeyKind, Store};
use tokio_util::sync::CancellationToken;

use crate::cli::UpArgs;
use crate::secrets;

/// The id of the agent `up` runs beside the control plane.
const LOCAL_AGENT_ID: &str = "local";

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => secrets::default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let db_url = format!("sqlite://{}", data_dir.join("streamspace.db").display());
    streamspace_store::migrate::up(&db_url)
        .await
        .context("preparing the embedded database")?;
    let store = streamspace_store::open(&db_url)
        .await
        .context("opening the embedded database")?;

    let token_path = data_dir.join("admin-token");
    let token = admin_token(store.as_ref(), &token_path).await?;
    let agent_key = fresh_local_agent_key(store.as_ref()).await?;

    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (is another `streamspace up` running? use --listen)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");

    let shutdown = CancellationToken::new();
    let config = ServerConfig {
        replica_id: "local".to_owned(),
        ..ServerConfig::default()
    };
    let mut server = tokio::spawn(streamspace_server::serve(
        listener,
        store,
        config,
        shutdown.child_token(),
    ));
    let mut agent_config = AgentConfig::new(
        vec![url.clone()],
        LOCAL_AGENT_ID.to_owned(),
        agent_key,
        data_dir.join("agent"),
    );
    agent_config.runtime = RuntimeKind::Process;
    agent_config.max_sessions = args.max_sessions;
    let mut agent = tokio::spawn(streamspace_agent::run(agent_config, shutdown.child_token()));

    print_banner(&url, &token, &token_path, &data_dir);

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

/// The admin token saved in the data directory, or a new one on the first start.
async fn admin_token(store: &dyn Store, path: &Path) -> anyhow::Result<String> {
    let saved = secrets::read(path)?;
    let generated = streamspace_server::bootstrap(store, saved.as_deref())
        .await
        .context("bootstrapping the control plane")?;
    match (saved, generated) {
        (Some(token), _) => Ok(token),
        (None, Some(token)) => {
            secrets::write(path, &token)?;
            Ok(token)
        }
        (None, None) => anyhow::bail!(
            "the database already has an admin token but {} is missing; \
             start with a fresh --data-dir or restore the file",
            path.display()
        ),
    }
}

/// The local agent's key lives only in memory: each start revokes the previous ones and makes a
/// new one, so no agent secret sits on disk.
async fn fresh_local_agent_key(store: &dyn Store) -> anyhow::Result<String> {
    for key in store.list_api_keys(ApiKeyKind::Agent).await? {
        if key.agent_id.as_deref() == Some(LOCAL_AGENT_ID) && key.revoked_at.is_none() {
            store.revoke_api_key(key.id).await?;
        }
    }
    let created = streamspace_server::create_agent_key(store, LOCAL_AGENT_ID)
        .await
        .context("creating the local agent's key")?;
    Ok(created.secret)
}

fn print_banner(url: &str, token: &str, token_path: &Path, data_dir: &Path) {
    println!("StreamSpace is up.");
    println!("  URL:          {url}");
    println!("  Admin token:  {token}");
    println!("                (saved in {})", token_path.display());
    println!("  Data:         {}", data_dir.display());
    println!("  Local agent:  {LOCAL_AGENT_ID} (process runtime)");
    println!();
    println!("Try:  streamspace session create xterm --wait --server {url}");
    println!("Press Ctrl-C to stop.");
}
