//! Client subcommands: thin wrappers over `streamspace-client` that print the API's objects.

use std::time::Instant;

use anyhow::Context;
use streamspace_client::{Client, WaitError};
use streamspace_proto::api::{
    CommandFilter, CommandStatus, CreateShare, CreateTemplate, ResourcesChange, SessionFilter,
    SessionRules, ShareMode, TemplatePorts, TemplateResources, UpdateTemplate,
};

use crate::cli::{
    AgentAction, AgentKeyCommand, ClientArgs, CommandsCommand, OrNone, OutputFormat,
    RecordingCommand, SessionCommand, TemplateCommand,
};
use crate::duration::Shown;
use crate::output::{print_many, print_one};
use crate::secrets;

pub(super) fn connect(args: &ClientArgs) -> anyhow::Result<Client> {
    let token = match &args.token {
        Some(t) => t.clone(),
        None => secrets::login_token_path()
            .ok()
            .and_then(|path| secrets::read(&path).ok().flatten())
            .or_else(|| {
                secrets::default_data_dir()
                    .ok()
                    .and_then(|dir| secrets::read(&dir.join("admin-token")).ok().flatten())
            })
            .context(
                "no API token: run `streamspace login`, pass --token or set STREAMSPACE_TOKEN",
            )?,
    };
    client_with(args, &token)
}

/// A client for `args.server` with `token`, trusting `--ca-cert`; a plain http:// URL to
/// another host is refused unless `--allow-insecure`.
pub(super) fn client_with(args: &ClientArgs, token: &str) -> anyhow::Result<Client> {
    streamspace_client::tls::check_plain(&args.server, args.trust.allow_insecure)?;
    let tls = streamspace_client::tls::client_config(&streamspace_client::tls::TlsOptions {
        ca_cert: args.trust.ca_cert.clone(),
        ..Default::default()
    })
    .context("setting up TLS (--ca-cert)")?;
    Client::with_tls(&args.server, token, tls).context("setting up the API client")
}

pub async fn session(cmd: SessionCommand) -> anyhow::Result<()> {
    match cmd {
        SessionCommand::Create {
            template,
            wait,
            timeout,
            client,
        } => {
            let api = connect(&client)?;
            let mut session = api.create_session(&template).await?;
            if wait {
                let deadline = Instant::now() + timeout;
                let running = streamspace_proto::SessionState::Running;
                session = match api.wait_for_session(session.id, running, deadline).await {
                    Ok(session) => session,
                    Err(WaitError::Ended(session)) => *session,
                    Err(WaitError::TimedOut { last, .. }) => anyhow::bail!(
                        "session {} is still {} after {}",
                        last.id,
                        last.state,
                        Shown(timeout)
                    ),
                    Err(e) => return Err(e.into()),
                };
            }
            print_one(client.output, &session)?;
            if session.state == streamspace_proto::SessionState::Failed {
                anyhow::bail!(
                    "session {} failed: {}",
                    session.id,
                    session
                        .error_message
                        .as_deref()
                        .unwrap_or("no reason given")
                );
            }
            Ok(())
        }
        SessionCommand::List {
            agent,
            owner,
            limit,
            client,
        } => {
            let filter = SessionFilter {
                agent_id: agent,
                owner,
                limit,
                cursor: None,
            };
            print_many(
                client.output,
                &connect(&client)?.list_sessions(&filter).await?,
            )
        }
        SessionCommand::Show { id, client } => {
            print_one(client.output, &connect(&client)?.get_session(id).await?)
        }
        SessionCommand::Rules { id, client } => {
            print_one(client.output, &connect(&client)?.session_rules(id).await?)
        }
        SessionCommand::Stop { id, client } => {
            print_one(client.output, &connect(&client)?.stop_session(id).await?)
        }
        SessionCommand::Hibernate { id, client } => print_one(
            client.output,
            &connect(&client)?.hibernate_session(id).await?,
        ),
        SessionCommand::Wake { id, client } => {
            print_one(client.output, &connect(&client)?.wake_session(id).await?)
        }
        SessionCommand::Connect {
            id,
            timeout,
            client,
        } => super::viewer::connect(&connect(&client)?, id, timeout, client.output).await,
        SessionCommand::Share {
            id,
            view_only,
            control: _,
            expires,
            users,
            groups,
            client,
        } => {
            let share = CreateShare {
                mode: if view_only {
                    ShareMode::ViewOnly
                } else {
                    ShareMode::Control
                },
                expires_in_secs: Some(expires.as_secs()),
                expires_at: None,
                users,
                groups,
            };
            let share = connect(&client)?.create_share(id, &share).await?;
            print_one(client.output, &share)?;
            if client.output == OutputFormat::Table {
                let base = client.server.trim_end_matches('/');
                println!("open {base}{} in the web UI to use it", share.link);
            }
            Ok(())
        }
        SessionCommand::Shares { id, client } => {
            print_many(client.output, &connect(&client)?.list_shares(id).await?)
        }
        SessionCommand::Unshare { id, share, client } => print_one(
            client.output,
            &connect(&client)?.revoke_share(id, share).await?,
        ),
        SessionCommand::Viewers { id, client } => {
            print_many(client.output, &connect(&client)?.list_viewers(id).await?)
        }
        SessionCommand::Kick { id, viewer, client } => {
            connect(&client)?.disconnect_viewer(id, viewer).await?;
            if client.output == OutputFormat::Table {
                println!("disconnected viewer {viewer}");
            }
            Ok(())
        }
        SessionCommand::Cp { from, to, client } => {
            super::files::copy(&connect(&client)?, &from, &to, client.output).await
        }
        SessionCommand::Ls { id, client } => {
            let listing = connect(&client)?.list_files(id).await?;
            print_many(client.output, &listing.entries)?;
            if listing.truncated {
                eprintln!("(more entries than a listing shows)");
            }
            Ok(())
        }
    }
}

pub async fn agent(action: AgentAction) -> anyhow::Result<()> {
    match action {
        AgentAction::List(client) => {
            print_many(client.output, &connect(&client)?.list_agents().await?)
        }
        AgentAction::Show { agent_id, client } => print_one(
            client.output,
            &connect(&client)?.get_agent(&agent_id).await?,
        ),
        AgentAction::Delete { agent_id, client } => {
            connect(&client)?.delete_agent(&agent_id).await?;
            if client.output == OutputFormat::Table {
                println!("deleted agent {agent_id}");
            }
            Ok(())
        }
        AgentAction::Ping {
            agent_id,
            wait,
            client,
        } => {
            let started = Instant::now();
            let command = connect(&client)?
                .ping_agent_and_wait(&agent_id, wait)
                .await?;
            match command.status {
                CommandStatus::Completed => {
                    if client.output == OutputFormat::Table {
                        println!(
                            "agent {agent_id} answered in {:.1} ms",
                            started.elapsed().as_secs_f64() * 1000.0
                        );
                        Ok(())
                    } else {
                        print_one(client.output, &command)
                    }
                }
                CommandStatus::Failed => anyhow::bail!(
                    "the ping to {agent_id} failed: {}",
                    command
                        .error_message
                        .as_deref()
                        .unwrap_or("no reason given")
                ),
                status => anyhow::bail!(
                    "agent {agent_id} did not answer within {} (the ping is {status}; \
                     is the agent connected? see `streamspace agent show {agent_id}`)",
                    Shown(wait)
                ),
            }
        }
    }
}

pub async fn commands(cmd: CommandsCommand) -> anyhow::Result<()> {
    match cmd {
        CommandsCommand::List {
            session,
            agent,
            status,
            limit,
            client,
        } => {
            let filter = CommandFilter {
                session_id: session,
                agent_id: agent,
                status,
                limit,
                cursor: None,
            };
            print_many(
                client.output,
                &connect(&client)?.list_commands(&filter).await?,
            )
        }
        CommandsCommand::Show { command_id, client } => print_one(
            client.output,
            &connect(&client)?.get_command(command_id).await?,
        ),
    }
}

pub async fn recording(cmd: RecordingCommand) -> anyhow::Result<()> {
    match cmd {
        RecordingCommand::List { session, client } => print_many(
            client.output,
            &connect(&client)?.list_recordings(session).await?,
        ),
        RecordingCommand::Get { id, file, client } => {
            let data = connect(&client)?.recording_data(id).await?;
            std::fs::write(&file, &data)
                .with_context(|| format!("writing the recording to {}", file.display()))?;
            eprintln!("wrote {} bytes to {}", data.len(), file.display());
            Ok(())
        }
        RecordingCommand::Rm { id, client } => {
            connect(&client)?.delete_recording(id).await?;
            Ok(())
        }
    }
}

pub async fn template(cmd: TemplateCommand) -> anyhow::Result<()> {
    match cmd {
        TemplateCommand::List(client) => {
            print_many(client.output, &connect(&client)?.list_templates().await?)
        }
        TemplateCommand::Create {
            name,
            command,
            description,
            env,
            allowed_groups,
            category,
            tags,
            icon,
            rules,
            runtime,
            client,
        } => {
            let body = CreateTemplate {
                name,
                description,
                command,
                env: env.into_iter().collect(),
                image: runtime.image,
                ports: TemplatePorts {
                    vnc: runtime.vnc_port,
                },
                resources: TemplateResources {
                    cpu_millis: runtime.cpu_millis,
                    memory_mib: runtime.memory_mib,
                },
                persistent_home: runtime.persistent_home,
                idle_timeout_secs: runtime
                    .idle_timeout
                    .map(|d| u32::try_from(d.as_secs()))
                    .transpose()
                    .context("--idle-timeout does not fit the API's u32 seconds")?,
                allowed_groups,
                category,
                tags,
                icon,
                rules: rules.apply(SessionRules::default()),
            };
            print_one(
                client.output,
                &connect(&client)?.create_template(&body).await?,
            )
        }
        TemplateCommand::Update {
            name,
            command,
            description,
            env,
            clear_env,
            allowed_groups,
            image,
            vnc_port,
            cpu_millis,
            memory_mib,
            persistent_home,
            idle_timeout,
            category,
            tags,
            icon,
            rules,
            client,
        } => {
            let api = connect(&client)?;
            // The API replaces rules whole: apply the flags to what the template has now.
            let rules = if rules.any() {
                let current = api.get_template(&name).await?.rules;
                Some(Some(rules.apply(current)))
            } else {
                None
            };
            let resources = (cpu_millis.is_some() || memory_mib.is_some()).then(|| {
                Some(ResourcesChange {
                    cpu_millis: cpu_millis.map(|v| v.0),
                    memory_mib: memory_mib.map(|v| v.0),
                })
            });
            let idle_timeout_secs = match idle_timeout {
                None => None,
                Some(OrNone(d)) => Some(
                    d.map(|d| u32::try_from(d.as_secs()))
                        .transpose()
                        .context("--idle-timeout does not fit the API's u32 seconds")?,
                ),
            };
            let body = UpdateTemplate {
                description: description.map(Some),
                command: (!command.is_empty()).then_some(Some(command)),
                env: if clear_env {
                    Some(None)
                } else {
                    (!env.is_empty()).then(|| Some(env.into_iter().collect()))
                },
                image: image.map(|i| Some(i).filter(|i| !i.is_empty())),
                ports: vnc_port.map(|vnc| Some(TemplatePorts { vnc })),
                resources,
                persistent_home: persistent_home.map(Some),
                idle_timeout_secs,
                allowed_groups: allowed_groups
                    .map(|groups| Some(groups.into_iter().filter(|g| !g.is_empty()).collect())),
                category: category.map(|c| Some(c).filter(|c| !c.is_empty())),
                tags: tags.map(|tags| Some(tags.into_iter().filter(|t| !t.is_empty()).collect())),
                icon: icon.map(|i| i.0),
                rules,
            };
            print_one(client.output, &api.update_template(&name, &body).await?)
        }
        TemplateCommand::Delete { name, client } => {
            connect(&client)?.delete_template(&name).await?;
            if client.output == OutputFormat::Table {
                println!("deleted template {name}");
            }
            Ok(())
        }
    }
}

pub async fn agent_key(cmd: AgentKeyCommand) -> anyhow::Result<()> {
    match cmd {
        AgentKeyCommand::Create { agent_id, client } => {
            let created = connect(&client)?.create_agent_key(&agent_id).await?;
            match client.output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&created)?),
                OutputFormat::Table => {
                    print_one(client.output, &created.key)?;
                    println!();
                    println!("Secret (shown once): {}", created.secret);
                }
            }
            Ok(())
        }
        AgentKeyCommand::List(client) => {
            print_many(client.output, &connect(&client)?.list_agent_keys().await?)
        }
        AgentKeyCommand::Revoke { id, client } => {
            connect(&client)?.revoke_agent_key(id).await?;
            if client.output == OutputFormat::Table {
                println!("revoked key {id}");
            }
            Ok(())
        }
    }
}

/// `streamspace overview`: this moment (sessions by state, unfinished commands, each agent's
/// load against its capacity), then the newest intervals of the history.
pub async fn overview(args: crate::cli::OverviewArgs) -> anyhow::Result<()> {
    let api = connect(&args.client)?;
    let overview = api.overview(args.hours).await?;
    if args.client.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&overview)?);
        return Ok(());
    }
    let counts = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("sessions now: {}", counts(&overview.sessions_now));
    println!(
        "commands in flight: {}",
        counts(&overview.commands_in_flight)
    );
    let agents = api.list_agents().await?;
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                crate::output::terminal_safe(&a.agent_id).into_owned(),
                a.status.as_str().to_owned(),
                a.platform.clone(),
                format!("{}/{}", a.active_sessions, a.max_sessions),
                a.replica_id.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!();
    crate::output::print_rows(
        &["AGENT", "STATUS", "PLATFORM", "SESSIONS", "REPLICA"],
        &rows,
    );
    let newest = overview.points.len().saturating_sub(args.last);
    let rows: Vec<Vec<String>> = overview.points[newest..]
        .iter()
        .map(|p| {
            vec![
                p.at.format("%Y-%m-%d %H:%M").to_string(),
                p.sessions_running.to_string(),
                p.sessions_hibernated.to_string(),
                (p.sessions_pending + p.sessions_starting).to_string(),
                p.sessions_failed.to_string(),
                p.agents_online.to_string(),
                p.commands_created.to_string(),
                p.commands_failed.to_string(),
            ]
        })
        .collect();
    println!();
    println!(
        "last {} h, {}-minute intervals ({} of {} shown):",
        overview.hours,
        overview.interval_secs / 60,
        rows.len(),
        overview.points.len()
    );
    crate::output::print_rows(
        &[
            "UNTIL (UTC)",
            "RUNNING",
            "HIBERNATED",
            "STARTING",
            "FAILED",
            "AGENTS",
            "COMMANDS",
            "CMD FAILED",
        ],
        &rows,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn session_list(extra: &[&str]) -> ClientArgs {
        let base = ["streamspace", "session", "list"];
        let cli = Cli::try_parse_from(base.iter().chain(extra.iter())).expect("parses");
        match cli.command {
            Command::Session(SessionCommand::List { client, .. }) => client,
            other => panic!("expected session list, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_url_to_another_host_is_refused_unless_allowed() {
        let args = session_list(&["--server", "http://cp.example:8080"]);
        let err = client_with(&args, "t").expect_err("plain http to another host");
        let text = format!("{err:#}");
        assert!(
            text.contains("unencrypted") && text.contains("--allow-insecure"),
            "the refusal says why and how to override: {text}"
        );
        let args = session_list(&["--server", "http://cp.example:8080", "--allow-insecure"]);
        assert!(
            client_with(&args, "t").is_ok(),
            "--allow-insecure allows it"
        );
        let args = session_list(&["--server", "http://127.0.0.1:8080"]);
        assert!(client_with(&args, "t").is_ok(), "loopback needs no TLS");
        let args = session_list(&["--server", "https://cp.example"]);
        assert!(client_with(&args, "t").is_ok());
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let args = session_list(&[
            "--server",
            "https://cp.example",
            "--ca-cert",
            "/nonexistent/ca.pem",
        ]);
        let err = client_with(&args, "t").expect_err("a missing CA file");
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }
}
