//! The `streamspace` command: every StreamSpace role in one binary.
//!
//! - `up`: a complete platform on a laptop (control plane on embedded SQLite plus a local agent).
//! - `server`: one control-plane replica against PostgreSQL (or SQLite).
//! - `agent`: an agent that connects out to the control plane and runs sessions.
//! - `migrate`: apply, revert or list schema migrations.
//! - `session`, `agent list|show|delete`, `command`, `template`, `agent-key`: REST API clients.
//!
//! This crate only parses arguments and wires the library crates together; behaviour lives in
//! `streamspace-server`, `streamspace-agent`, `streamspace-store` and `streamspace-client`.

mod cli;
mod cli_identity;
mod commands;
mod duration;
mod legacy_env;
mod output;
mod secrets;
mod sso;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS (wss:// agents, https:// clients) uses ring; install it once for the whole process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_tracing(cli.log_format, cli.command.default_log_level());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Errors carry the server's messages, which may quote what a user sent.
            eprintln!("error: {}", output::terminal_safe(&err.to_string()));
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {}", output::terminal_safe(&cause.to_string()));
            }
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
