//! The command line as an operator uses it: migrations through the one migrator, and errors
//! that say what went wrong.

mod common;

use std::process::{Command, Output};

use anyhow::Context;
use streamspace_testkit::PgCluster;

fn streamspace(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(common::BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("STREAMSPACE_TOKEN")
        .env_remove("STREAMSPACE_SERVER")
        .output()
        .context("running streamspace")
}

fn ok(args: &[&str]) -> anyhow::Result<String> {
    let out = streamspace(args)?;
    anyhow::ensure!(
        out.status.success(),
        "streamspace {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// (version, state) pairs from `migrate status`.
fn status(url: &str) -> anyhow::Result<Vec<(i64, String)>> {
    ok(&["migrate", "status", "--database-url", url])?
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let version = words.next().context("version")?.parse()?;
            let state = words.next().context("state")?.to_owned();
            Ok((version, state))
        })
        .collect()
}

fn migrate_round_trip(url: &str) -> anyhow::Result<()> {
    let before = status(url)?;
    assert!(before.len() >= 2, "at least two migrations: {before:?}");
    assert!(before.iter().all(|(_, s)| s == "pending"), "{before:?}");

    let applied = ok(&["migrate", "up", "--database-url", url])?;
    assert_eq!(applied.lines().count(), before.len(), "{applied}");
    assert!(status(url)?.iter().all(|(_, s)| s == "applied"));
    assert_eq!(
        ok(&["migrate", "up", "--database-url", url])?.trim(),
        "database is up to date"
    );

    let newest = before.last().map(|(v, _)| *v).context("a migration")?;
    let reverted = ok(&["migrate", "down", "--database-url", url])?;
    assert_eq!(reverted.trim(), format!("reverted {newest}"));
    let after_down = status(url)?;
    assert_eq!(after_down.last(), Some(&(newest, "pending".to_owned())));
    assert!(
        after_down[..after_down.len() - 1]
            .iter()
            .all(|(_, s)| s == "applied")
    );

    ok(&["migrate", "up", "--database-url", url])?;
    assert!(status(url)?.iter().all(|(_, s)| s == "applied"));
    Ok(())
}

#[test]
fn migrate_applies_reverts_and_reports_on_postgres() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    migrate_round_trip(&pg.create_database()?)
}

#[test]
fn migrate_applies_reverts_and_reports_on_sqlite() -> anyhow::Result<()> {
    let db = streamspace_testkit::TestDatabase::sqlite()?;
    migrate_round_trip(db.url())
}

#[test]
fn server_with_no_migrate_on_an_empty_database_fails_clearly() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let url = pg.create_database()?;
    let out = streamspace(&[
        "server",
        "--database-url",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--no-migrate",
    ])?;
    assert!(
        !out.status.success(),
        "a server without its schema must not start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema is not up to date") && stderr.contains("migrate up"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn client_errors_name_the_problem() -> anyhow::Result<()> {
    let out = streamspace(&[
        "session",
        "list",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "ssa_x",
    ])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not reach the control plane at http://127.0.0.1:9"),
        "{stderr}"
    );

    let out = streamspace(&["migrate", "status", "--database-url", "mysql://nope"])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    Ok(())
}
