//! `streamspace migrate up|down|status`.

use anyhow::Context;
use streamspace_store::{MigrationState, migrate};

use crate::cli::{MigrateAction, MigrateArgs};

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let url = args
        .database_url
        .context("--database-url (or DATABASE_URL) is required")?;
    match args.action {
        MigrateAction::Up => {
            let applied = migrate::up(&url).await.context("applying migrations")?;
            if applied.is_empty() {
                println!("database is up to date");
            }
            for version in applied {
                println!("applied {version}");
            }
        }
        MigrateAction::Down { steps } => {
            let reverted = migrate::down(&url, steps)
                .await
                .context("reverting migrations")?;
            if reverted.is_empty() {
                println!("nothing to revert");
            }
            for version in reverted {
                println!("reverted {version}");
            }
        }
        MigrateAction::Status => {
            let status = migrate::status(&url)
                .await
                .context("reading migration status")?;
            for m in status {
                let state = match m.state {
                    MigrationState::Applied => "applied",
                    MigrationState::Pending => "pending",
                };
                println!("{:>4}  {:<8} {}", m.version, state, m.description);
            }
        }
    }
    Ok(())
}
