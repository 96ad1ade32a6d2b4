//! One module per subcommand; each turns parsed arguments into calls on the library crates.

mod agent;
mod client;
mod files;
mod identity;
mod local_machine;
mod migrate;
mod quota;
mod server;
mod totp;
mod up;
mod viewer;

use crate::cli::Command;

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Server(args) => server::run(*args).await,
        Command::Agent(cmd) => match cmd.action {
            None => agent::run(*cmd.run).await,
            Some(action) => client::agent(action).await,
        },
        Command::Migrate(args) => migrate::run(args).await,
        Command::Session(cmd) => client::session(cmd).await,
        Command::Commands(cmd) => client::commands(cmd).await,
        Command::Recording(cmd) => client::recording(cmd).await,
        Command::Template(cmd) => client::template(cmd).await,
        Command::AgentKey(cmd) => client::agent_key(cmd).await,
        Command::Login(args) => identity::login(args).await,
        Command::Logout(args) => identity::logout(args).await,
        Command::Whoami(args) => identity::whoami(args).await,
        Command::Overview(args) => client::overview(args).await,
        Command::User(cmd) => identity::user(cmd).await,
        Command::Group(cmd) => identity::group(cmd).await,
        Command::Totp(cmd) => totp::run(cmd).await,
        Command::Token(cmd) => identity::token(cmd).await,
        Command::Audit(cmd) => identity::audit(cmd).await,
        Command::Quota(cmd) => quota::run(cmd).await,
        Command::Openapi => {
            println!("{}", streamspace_server::openapi::document_json());
            Ok(())
        }
        Command::TransferSidecar(args) => transfer_sidecar(args).await,
    }
}

/// Serves the transfer folder under `args.home` until asked to stop.
async fn transfer_sidecar(args: crate::cli::TransferSidecarArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let token = std::env::var(streamspace_agent::runtime::kubernetes::objects::TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!(
                "{} is not set: the sidecar serves no one without a token",
                streamspace_agent::runtime::kubernetes::objects::TOKEN_ENV
            )
        })?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener
        .local_addr()
        .context("the listener has no address")?;
    tracing::info!(listen = %address, home = %args.home.display(), "serving the session's transfer folder");
    let folder = streamspace_agent::transfer::LocalFolder {
        home: args.home,
        owner: None,
    };
    tokio::select! {
        served = streamspace_agent::transfer::remote::serve(listener, folder, token) => {
            served.context("the transfer sidecar's listener failed")
        }
        () = stop_signal() => Ok(()),
    }
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
