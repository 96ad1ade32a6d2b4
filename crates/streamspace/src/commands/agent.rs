//! `streamspace agent --server URL --agent-id ID --key KEY`: run an agent.

use anyhow::Context;
use streamspace_agent::{AgentConfig, RuntimeKind};
use tokio_util::sync::CancellationToken;

use crate::cli::{self, AgentRunArgs, RuntimeArg};
use crate::legacy_env::{self, Lookup, process_env};
use crate::secrets;

pub async fn run(args: AgentRunArgs) -> anyhow::Result<()> {
    let config = agent_config(args, &process_env)?;
    streamspace_agent::private_dir::ensure(&config.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            config.state_dir.display()
        )
    })?;

    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        super::stop_signal().await;
        stopper.cancel();
    });
    streamspace_agent::run(config, shutdown)
        .await
        .context("agent stopped with an error")
}

/// The agent's configuration from its flags and, for renamed settings, the old variables in
/// `env`. Touches nothing on disk.
fn agent_config(args: AgentRunArgs, env: Lookup) -> anyhow::Result<AgentConfig> {
    let servers = legacy_env::agent_servers(args.servers, env)?;
    if servers.is_empty() {
        anyhow::bail!(
            "--server (or STREAMSPACE_AGENT_SERVERS) is required to run an agent \
             (the control plane's http(s):// URL)"
        );
    }
    let agent_id = args
        .agent_id
        .context("--agent-id is required to run an agent")?;
    let key = args
        .key
        .context("--key is required to run an agent (create one with `streamspace agent-key create AGENT_ID`)")?;
    let ha_retry = legacy_env::duration(
        args.ha_retry,
        "STREAMSPACE_HA_RETRY_MS",
        "STREAMSPACE_HA_RETRY",
        cli::HA_RETRY,
        env,
    )?;
    let lease = legacy_env::duration(
        args.lease,
        "STREAMSPACE_LEASE_SECS",
        "STREAMSPACE_LEASE",
        cli::LEASE,
        env,
    )?;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => match legacy_env::agent_state_parent(env) {
            Some(parent) => parent,
            None => secrets::user_data_dir()?,
        }
        .join(format!("agent-{agent_id}")),
    };
    let mut config = AgentConfig::new(servers, agent_id, key, state_dir);
    config.run_as = args.run_as;
    config.transfer_home = args.transfer_home;
    config.runtime = match args.runtime {
        RuntimeArg::Process => RuntimeKind::Process,
        RuntimeArg::Docker => RuntimeKind::Docker,
        RuntimeArg::Kubernetes => RuntimeKind::Kubernetes,
    };
    config.docker_host = args.docker_host;
    config.ha = args
        .ha_lock_file
        .map(|lock_file| streamspace_agent::leadership::HaConfig {
            lock_file,
            retry: ha_retry.unwrap_or(cli::DEFAULT_HA_RETRY),
        });
    config.kubernetes.namespace = args.namespace;
    config.kubernetes.session_namespace = args.session_namespace;
    config.confinement = streamspace_agent::runtime::Confinement {
        pids_limit: args.session_pids_limit,
        read_only_root: args.session_read_only_root,
        fs_group: (args.session_fs_group != 0).then_some(args.session_fs_group),
    };
    config.kubernetes.kubeconfig = args.kubeconfig;
    config.kubernetes.lease_duration = Some(lease.unwrap_or(cli::DEFAULT_LEASE));
    config.kubernetes.storage_class = args.storage_class;
    config.kubernetes.home_size = Some(args.home_size);
    config.kubernetes.user_home_access_mode = Some(args.user_home_access_mode);
    config.kubernetes.user_home_size = args.user_home_size;
    config.kubernetes.user_home_storage_class = args.user_home_storage_class;
    config.kubernetes.cluster_domain = Some(args.cluster_domain);
    config.kubernetes.transfer = args.transfer_sidecar_image.map(|image| {
        streamspace_agent::runtime::kubernetes::TransferSidecar {
            image,
            port: args.transfer_sidecar_port,
            uid: args.transfer_sidecar_uid,
        }
    });
    config.max_sessions = args.max_sessions;
    config.labels = args.labels.into_iter().collect();
    config.websocket_streams = args.websocket_streams;
    config.max_concurrent_commands = usize::try_from(args.max_concurrent_commands)
        .expect("a u32 fits in usize on supported targets");
    config.allow_insecure = args.trust.allow_insecure;
    config.tls = streamspace_client::tls::TlsOptions {
        ca_cert: args.trust.ca_cert,
        identity: args
            .tls_client_cert
            .zip(args.tls_client_key)
            .map(|(cert, key)| streamspace_client::tls::Identity { cert, key }),
        server_name: None,
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> AgentRunArgs {
        let cli = Cli::try_parse_from(["streamspace", "agent"].iter().chain(args.iter()))
            .expect("agent flags parse");
        match cli.command {
            Command::Agent(agent) => *agent.run,
            other => panic!("expected the agent command, got {other:?}"),
        }
    }

    const BASE: [&str; 6] = ["--agent-id", "a1", "--key", "k", "--state-dir", "/s"];

    #[test]
    fn old_variables_still_configure_an_agent() {
        let env = |name: &str| -> Option<OsString> {
            match name {
                "STREAMSPACE_SERVER" => Some("http://a,http://b".into()),
                "STREAMSPACE_LEASE_SECS" => Some("30".into()),
                "STREAMSPACE_HA_RETRY_MS" => Some("250".into()),
                _ => None,
            }
        };
        let args = [&BASE[..], &["--ha-lock-file", "/l"]].concat();
        let config = agent_config(parse(&args), &env).expect("configured");
        assert_eq!(config.servers, ["http://a", "http://b"]);
        assert_eq!(
            config.kubernetes.lease_duration,
            Some(Duration::from_secs(30))
        );
        let ha = config.ha.expect("HA is on with a lock file");
        assert_eq!(ha.retry, Duration::from_millis(250));
        assert_eq!(config.state_dir, PathBuf::from("/s"));
    }

    #[test]
    fn run_as_reaches_the_agent_configuration() {
        let none = |_: &str| None;
        let args = [&BASE[..], &["--server", "http://a"]].concat();
        assert_eq!(agent_config(parse(&args), &none).expect("ok").run_as, None);
        let args = [&args[..], &["--run-as", "nobody"]].concat();
        let config = agent_config(parse(&args), &none).expect("configured");
        assert_eq!(config.run_as.as_deref(), Some("nobody"));
    }

    #[test]
    fn defaults_apply_without_old_variables() {
        let none = |_: &str| None;
        let args = [&BASE[..], &["--server", "http://a", "--ha-lock-file", "/l"]].concat();
        let config = agent_config(parse(&args), &none).expect("configured");
        assert_eq!(config.kubernetes.lease_duration, Some(cli::DEFAULT_LEASE));
        assert_eq!(config.ha.expect("HA is on").retry, cli::DEFAULT_HA_RETRY);
        let err = agent_config(parse(&BASE), &none).expect_err("no server");
        assert!(
            err.to_string().contains("STREAMSPACE_AGENT_SERVERS"),
            "{err}"
        );
    }

    #[test]
    fn session_confinement_flags_reach_the_runtimes() {
        let none = |_: &str| None;
        let args = [&BASE[..], &["--server", "http://a"]].concat();
        let config = agent_config(parse(&args), &none).expect("configured");
        assert_eq!(
            config.confinement,
            streamspace_agent::runtime::Confinement::default()
        );
        assert_eq!(config.kubernetes.session_namespace, None);

        let strict = [
            "--server",
            "http://a",
            "--session-namespace",
            "desktops",
            "--session-read-only-root",
            "--session-pids-limit",
            "100",
            "--session-fs-group",
            "0",
        ];
        let config =
            agent_config(parse(&[&BASE[..], &strict].concat()), &none).expect("configured");
        assert_eq!(
            config.kubernetes.session_namespace.as_deref(),
            Some("desktops")
        );
        assert!(config.confinement.read_only_root);
        assert_eq!(config.confinement.pids_limit, 100);
        assert_eq!(config.confinement.fs_group, None, "0 turns fsGroup off");
    }
}
