//! `totp enable|disable`: two-step sign-in with one-time codes for your own account.
//!
//! Enabling is the server's two steps: the new secret is printed (with its `otpauth://` URI,
//! which authenticator apps accept pasted or as a QR code made from it), then a code from the
//! app confirms it, and the recovery codes are printed once. Until confirmed, nothing changes.

use anyhow::Context;

use super::client::connect;
use super::identity::{prompt, stdin_line};
use crate::cli::OutputFormat;
use crate::cli_identity::TotpCommand;

pub async fn run(cmd: TotpCommand) -> anyhow::Result<()> {
    match cmd {
        TotpCommand::Enable(args) => {
            let client = connect(&args)?;
            let enrolment = client.start_totp().await?;
            let json = args.output == OutputFormat::Json;
            if json {
                println!("{}", serde_json::to_string_pretty(&enrolment)?);
            } else {
                println!("Add this account to your authenticator app:");
                println!("  secret: {}", enrolment.secret);
                println!("  URI:    {}", enrolment.otpauth_uri);
            }
            let code = prompt("Code from the app")?;
            let codes = client
                .confirm_totp(&code)
                .await
                .context("confirming the code")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&codes)?);
            } else {
                println!("One-time codes are on. Recovery codes, each usable once instead of a");
                println!("code (keep them somewhere safe; they are not shown again):");
                for code in &codes.recovery_codes {
                    println!("  {code}");
                }
            }
            Ok(())
        }
        TotpCommand::Disable {
            password_stdin,
            client,
        } => {
            let password = if password_stdin {
                stdin_line("password")?
            } else {
                rpassword::prompt_password("Password: ").context("reading the password")?
            };
            connect(&client)?.disable_totp(&password).await?;
            if client.output == OutputFormat::Table {
                println!("one-time codes are off");
            }
            Ok(())
        }
    }
}
