//! Command-line definitions for signing in and for users, groups, their quotas and personal
//! tokens.

use std::time::Duration;

use clap::{Args, Subcommand};
use streamspace_proto::api::Role;

use crate::cli::ClientArgs;
use crate::duration::DurationParser;

/// A token's lifetime: at least a minute, at most ten years.
const TOKEN_LIFETIME: DurationParser = DurationParser::secs()
    .at_least(Duration::from_secs(60))
    .at_most(Duration::from_secs(10 * 366 * 86_400))
    .whole_seconds();

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Your username [default: asked for].
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password from the first line of standard input instead of asking.
    #[arg(long)]
    pub password_stdin: bool,
    /// Save this token instead of signing in with a password.
    #[arg(long = "with-token", value_name = "TOKEN")]
    pub with_token: Option<String>,
    /// Name of the API token the sign-in creates [default: cli at this host's name].
    #[arg(long)]
    pub token_name: Option<String>,
    /// The one-time code (or a recovery code) for an account with two-step sign-in [default:
    /// asked for when the server needs one]. Codes are single-use, so a flag is safe.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum TotpCommand {
    /// Turn on one-time codes (RFC 6238) for your account: prints the secret and its
    /// `otpauth://` URI for an authenticator app, asks for a code from it, then prints ten
    /// recovery codes, shown this once.
    Enable(ClientArgs),
    /// Turn one-time codes off for your account.
    Disable {
        /// Read your password from the first line of standard input instead of asking.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        username: String,
        /// user, operator or admin.
        #[arg(long, default_value = "user", value_parser = parse_role)]
        role: Role,
        /// Read the new user's password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List users.
    List(ClientArgs),
    /// Show one user.
    Show {
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a user's role, name, address or password.
    Update {
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Option<Role>,
        #[arg(long)]
        display_name: Option<String>,
        /// An empty string clears it.
        #[arg(long)]
        email: Option<String>,
        /// Read a new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Turn off the user's one-time codes and drop their recovery codes (for a user who
        /// lost their authenticator).
        #[arg(long)]
        reset_totp: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Disable a user: they can no longer sign in, and their tokens stop working.
    Disable {
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Enable a disabled user again.
    Enable {
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a user; their running sessions are stopped.
    Delete {
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a group.
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List groups with their members.
    List(ClientArgs),
    /// Show one group.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a group.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a group's session rules, or change them with the rule flags (what is not given
    /// stays as it is).
    Rules {
        name: String,
        #[command(flatten)]
        rules: crate::cli::RulesArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a user to a group.
    AddMember {
        group: String,
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a user from a group.
    RemoveMember {
        group: String,
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a personal API token; the secret is shown once.
    Create {
        #[arg(long)]
        name: String,
        /// Create it for another user (admins).
        #[arg(long)]
        user: Option<String>,
        /// Lifetime, e.g. `30d` or `12h` [default: until revoked].
        #[arg(long, value_parser = TOKEN_LIFETIME)]
        expires_in: Option<Duration>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your tokens (never their secrets), or another user's (admins).
    List {
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token.
    Revoke {
        id: uuid::Uuid,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, newest first (admins: everyone's; others: their own).
    List {
        /// Only what this user did.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, e.g. `session.create` or `auth.login_failed`.
        #[arg(long)]
        action: Option<String>,
        /// Only entries about this target (a session id, a username, …).
        #[arg(long)]
        target: Option<String>,
        /// Only entries at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// At most this many entries in all (pages are followed).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set a user's or a group's limits; limits not named stay as they are. A cleared limit
    /// inherits: a user's from their groups (the most generous) or the server's default, a
    /// group's has no say any more.
    Set {
        #[command(flatten)]
        target: QuotaTarget,
        /// Most sessions at once (hibernated ones count).
        #[arg(long, conflicts_with = "clear_max_sessions")]
        max_sessions: Option<u32>,
        /// Most CPU, in thousandths of a core, over all sessions.
        #[arg(long, conflicts_with = "clear_max_cpu_millis")]
        max_cpu_millis: Option<u32>,
        /// Most memory, in MiB, over all sessions.
        #[arg(long, conflicts_with = "clear_max_memory_mib")]
        max_memory_mib: Option<u32>,
        #[arg(long)]
        clear_max_sessions: bool,
        #[arg(long)]
        clear_max_cpu_millis: bool,
        #[arg(long)]
        clear_max_memory_mib: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a user's own limits, the limits that apply to them and their use, or a group's
    /// limits.
    Show {
        #[command(flatten)]
        target: QuotaTarget,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Whose quota: exactly one of `--user` and `--group`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct QuotaTarget {
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse::<Role>()
        .map_err(|_| format!("{s:?} is not a role; expected user, operator or admin"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn identity_commands_parse() {
        let cli = Cli::try_parse_from([
            "streamspace",
            "user",
            "create",
            "alice",
            "--role",
            "operator",
            "--password-stdin",
        ])
        .expect("a valid command line");
        assert!(matches!(cli.command, Command::User(_)));
        assert!(
            Cli::try_parse_from(["streamspace", "user", "create", "a", "--role", "root"]).is_err()
        );
        assert!(
            Cli::try_parse_from([
                "streamspace",
                "token",
                "create",
                "--name",
                "ci",
                "--expires-in",
                "1s"
            ])
            .is_err(),
            "a token shorter than a minute is refused"
        );
        assert!(
            Cli::try_parse_from(["streamspace", "login", "-u", "bob", "--password-stdin"]).is_ok()
        );
        assert!(
            Cli::try_parse_from(["streamspace", "login", "-u", "bob", "--totp", "123456"]).is_ok()
        );
        let totp = Cli::try_parse_from(["streamspace", "totp", "disable", "--password-stdin"])
            .expect("a valid command line");
        assert!(matches!(totp.command, Command::Totp(_)));
        assert!(Cli::try_parse_from(["streamspace", "totp", "enable"]).is_ok());
        let quota = |args: &[&str]| {
            Cli::try_parse_from(["streamspace", "quota"].iter().chain(args))
                .map(|cli| matches!(cli.command, Command::Quota(_)))
        };
        assert!(matches!(
            quota(&[
                "set",
                "--user",
                "alice",
                "--max-sessions",
                "3",
                "--clear-max-cpu-millis"
            ]),
            Ok(true)
        ));
        assert!(
            quota(&["show", "--user", "alice", "--group", "staff"]).is_err(),
            "one target at a time"
        );
        assert!(quota(&["show"]).is_err(), "a target is required");
        assert!(
            quota(&[
                "set",
                "--group",
                "g",
                "--max-sessions",
                "1",
                "--clear-max-sessions"
            ])
            .is_err(),
            "setting and clearing one limit at once is refused"
        );
        assert!(quota(&["set", "--group", "g", "--max-sessions", "-1"]).is_err());
    }
}
