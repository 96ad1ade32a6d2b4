//! `login`, `logout`, `whoami` (with your quota and use), and the `user`, `group` and `token`
//! commands.
//!
//! `login` signs in with a password (asked for, or read from standard input) and saves the API
//! token the server returns in the user's configuration directory, mode 0600; later client
//! commands use it unless given `--token`. Passwords are never taken as flags: command lines
//! end up in shell histories and process listings.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use streamspace_proto::api::{
    AuditFilter, CreateGroup, CreateToken, CreateUser, LoginRequest, UpdateUser, User,
};

use super::client::{client_with, connect};
use crate::cli::{ClientArgs, OutputFormat};
use crate::cli_identity::{AuditCommand, GroupCommand, LoginArgs, TokenCommand, UserCommand};
use crate::output::{print_many, print_one, terminal_safe};
use crate::secrets;

/// Reads the first line of standard input (a password given with `--password-stdin`).
pub(super) fn stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!line.is_empty(), "the {what} on standard input is empty");
    Ok(line)
}

pub(super) fn prompt(question: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{question} needed: standard input is not a terminal (use the flags instead)"
    );
    eprint!("{question}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    // Before asking for a password that would cross the network in clear.
    streamspace_client::tls::check_plain(&args.client.server, args.client.trust.allow_insecure)?;
    let path = secrets::login_token_path()?;
    let token = match args.with_token {
        Some(token) => token,
        None => {
            let username = match args.username {
                Some(u) => u,
                None => prompt("Username")?,
            };
            let password = if args.password_stdin {
                stdin_line("password")?
            } else {
                rpassword::prompt_password("Password: ").context("reading the password")?
            };
            let host = hostname();
            let mut request = LoginRequest {
                username,
                password,
                totp: args.totp,
                token_name: Some(args.token_name.unwrap_or_else(|| format!("cli@{host}"))),
            };
            let client = client_with(&args.client, "")?;
            let answer = match client.login(&request).await {
                Err(e) if e.code() == Some("totp_required") && request.totp.is_none() => {
                    request.totp = Some(prompt("One-time code (or a recovery code)")?);
                    client.login(&request).await?
                }
                answer => answer?,
            };
            answer
                .token
                .context("the server answered the sign-in without a token")?
                .token
        }
    };
    let client = client_with(&args.client, &token)?;
    let me = client
        .me()
        .await
        .context("checking the token with the server")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    secrets::write(&path, &token)?;
    match args.client.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&me.user)?),
        OutputFormat::Table => println!(
            "signed in as {} ({}); token saved in {}",
            terminal_safe(&me.user.username),
            me.user.role,
            path.display()
        ),
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

pub async fn logout(args: ClientArgs) -> anyhow::Result<()> {
    let path = secrets::login_token_path()?;
    let saved = secrets::read(&path)?;
    let client = match (&args.token, &saved) {
        (Some(_), _) => connect(&args)?,
        (None, Some(token)) => client_with(&args, token)?,
        (None, None) => anyhow::bail!("not signed in: no saved token in {}", path.display()),
    };
    client.logout().await.context("revoking the token")?;
    if args.token.is_none() {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    if args.output == OutputFormat::Table {
        println!("signed out");
    }
    Ok(())
}

pub async fn whoami(args: ClientArgs) -> anyhow::Result<()> {
    let me = connect(&args)?.me().await?;
    print_one(args.output, &me.user)?;
    // JSON stays the user alone, as scripts read it; people see their quota too.
    if args.output == OutputFormat::Table {
        println!();
        super::quota::print_own(&me.quota, &me.usage);
    }
    Ok(())
}

fn done(output: OutputFormat, message: String) {
    if output == OutputFormat::Table {
        println!("{}", terminal_safe(&message));
    }
}

pub async fn user(cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            username,
            role,
            password_stdin,
            display_name,
            email,
            client,
        } => {
            let password = password_stdin.then(|| stdin_line("password")).transpose()?;
            let body = CreateUser {
                username,
                role,
                password,
                display_name,
                email,
            };
            print_one(client.output, &connect(&client)?.create_user(&body).await?)
        }
        UserCommand::List(client) => {
            print_many(client.output, &connect(&client)?.list_users().await?)
        }
        UserCommand::Show { username, client } => {
            print_one(client.output, &connect(&client)?.get_user(&username).await?)
        }
        UserCommand::Update {
            username,
            role,
            display_name,
            email,
            password_stdin,
            reset_totp,
            client,
        } => {
            let password = password_stdin.then(|| stdin_line("password")).transpose()?;
            let change = UpdateUser {
                role,
                display_name,
                email,
                password,
                disabled: None,
                reset_totp,
            };
            update(&client, &username, &change).await
        }
        UserCommand::Disable { username, client } => {
            let change = UpdateUser {
                disabled: Some(true),
                ..UpdateUser::default()
            };
            update(&client, &username, &change).await
        }
        UserCommand::Enable { username, client } => {
            let change = UpdateUser {
                disabled: Some(false),
                ..UpdateUser::default()
            };
            update(&client, &username, &change).await
        }
        UserCommand::Delete { username, client } => {
            connect(&client)?.delete_user(&username).await?;
            done(client.output, format!("deleted user {username}"));
            Ok(())
        }
    }
}

async fn update(client: &ClientArgs, username: &str, change: &UpdateUser) -> anyhow::Result<()> {
    let user: User = connect(client)?.update_user(username, change).await?;
    print_one(client.output, &user)
}

pub async fn group(cmd: GroupCommand) -> anyhow::Result<()> {
    match cmd {
        GroupCommand::Create {
            name,
            description,
            client,
        } => {
            let body = CreateGroup { name, description };
            print_one(client.output, &connect(&client)?.create_group(&body).await?)
        }
        GroupCommand::List(client) => {
            print_many(client.output, &connect(&client)?.list_groups().await?)
        }
        GroupCommand::Show { name, client } => {
            print_one(client.output, &connect(&client)?.get_group(&name).await?)
        }
        GroupCommand::Delete { name, client } => {
            connect(&client)?.delete_group(&name).await?;
            done(client.output, format!("deleted group {name}"));
            Ok(())
        }
        GroupCommand::Rules {
            name,
            rules,
            client,
        } => {
            let api = connect(&client)?;
            let current = api.get_group_rules(&name).await?;
            let shown = if rules.any() {
                api.set_group_rules(&name, &rules.apply(current)).await?
            } else {
                current
            };
            print_one(client.output, &shown)
        }
        GroupCommand::AddMember {
            group,
            username,
            client,
        } => {
            let group = connect(&client)?
                .add_group_member(&group, &username)
                .await?;
            print_one(client.output, &group)
        }
        GroupCommand::RemoveMember {
            group,
            username,
            client,
        } => {
            connect(&client)?
                .remove_group_member(&group, &username)
                .await?;
            done(client.output, format!("removed {username} from {group}"));
            Ok(())
        }
    }
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            name,
            user,
            expires_in,
            client,
        } => {
            let body = CreateToken {
                name,
                user,
                expires_in_secs: expires_in.map(|d| d.as_secs()),
            };
            let created = connect(&client)?.create_token(&body).await?;
            match client.output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&created)?),
                OutputFormat::Table => {
                    println!(
                        "created token {} ({})",
                        created.id,
                        terminal_safe(&created.name)
                    );
                    println!("Secret (shown once): {}", created.token);
                }
            }
            Ok(())
        }
        TokenCommand::List { user, client } => print_many(
            client.output,
            &connect(&client)?.list_tokens(user.as_deref()).await?,
        ),
        TokenCommand::Revoke { id, client } => {
            connect(&client)?.revoke_token(id).await?;
            done(client.output, format!("revoked token {id}"));
            Ok(())
        }
    }
}

pub async fn audit(cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List {
        actor,
        action,
        target,
        since,
        until,
        limit,
        client,
    } = cmd;
    let api = connect(&client)?;
    let mut filter = AuditFilter {
        actor,
        action,
        target,
        since,
        until,
        cursor: None,
        limit: Some(u32::try_from(limit.clamp(1, 1000)).unwrap_or(1000)),
    };
    let mut entries = Vec::new();
    while entries.len() < limit {
        let page = api.list_audit(&filter).await?;
        entries.extend(page.items);
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    entries.truncate(limit);
    print_many(client.output, &entries)
}
