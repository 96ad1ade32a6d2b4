//! The database's own limit for what one command costs: `pgbench` running, against the server's
//! migrated database, the row writes the store made per command in the measured runs — one
//! INSERT and, as counted by PostgreSQL's statistics, one to three UPDATEs of `agent_commands`
//! (claim → sent unless the insert claimed it, the ack when it was written, complete), each its
//! own transaction, with prepared statements as sqlx uses.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

const PG_BIN_DIRS: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
];

/// The agent every pgbench command is written for; it exists because the measured topologies
/// registered it.
const AGENT: &str = "bench-agent-0";

/// The script of one command: an INSERT and `updates` UPDATEs — 1: inserted claimed (as the
/// server does when the agent is connected where the command is created), then completed;
/// 2: inserted, claimed, completed; 3: with the ack written too.
fn script(updates: usize) -> anyhow::Result<String> {
    let columns = "command_id, agent_id, session_id, action, payload, status, attempts, sent_at";
    let (insert, claim) = match updates {
        // The server's statement: claimed unless an earlier command of the agent is pending.
        1 => (
            format!(
                "INSERT INTO agent_commands ({columns}, created_at) SELECT gen_random_uuid(), \
                 '{AGENT}', NULL, 'pgbench', '{{}}', \
                 CASE WHEN s.now_sent THEN 'sent' ELSE 'pending' END, \
                 CASE WHEN s.now_sent THEN 1 ELSE 0 END, CASE WHEN s.now_sent THEN s.at END, s.at \
                 FROM (SELECT clock_timestamp() AS at, NOT EXISTS (SELECT 1 FROM agent_commands \
                 WHERE agent_id = '{AGENT}' AND status = 'pending') AS now_sent) AS s"
            ),
            "",
        ),
        2 | 3 => (
            format!(
                "INSERT INTO agent_commands ({columns}) VALUES (gen_random_uuid(), '{AGENT}', \
                 NULL, 'pgbench', '{{}}', 'pending', 0, NULL)"
            ),
            "UPDATE agent_commands SET status = 'sent', attempts = attempts + 1, \
             sent_at = clock_timestamp() WHERE command_id = :cid AND attempts = 0 \
             AND status IN ('pending', 'sent');\n",
        ),
        n => bail!("the reference knows commands of 1 to 3 UPDATEs, not {n}"),
    };
    let ack = if updates == 3 {
        concat!(
            "UPDATE agent_commands SET status = 'acknowledged', acknowledged_at = clock_timestamp() ",
            "WHERE command_id = :cid AND agent_id = 'bench-agent-0' AND status IN ('sent');\n"
        )
    } else {
        ""
    };
    Ok(format!(
        "{insert} RETURNING command_id AS cid \\gset\n\
         {claim}\
         {ack}\
         UPDATE agent_commands SET status = 'completed', result = '{{\"pong\": true}}', error_message = NULL, \
         completed_at = clock_timestamp() WHERE command_id = :cid AND agent_id = '{AGENT}' \
         AND status IN ('sent', 'acknowledged');\n"
    ))
}

/// Rows inserted into and updated in `agent_commands` so far, as PostgreSQL's statistics count
/// them (complete once the backends that wrote have exited).
pub fn command_table_writes(database_url: &str) -> anyhow::Result<(u64, u64)> {
    two_counts(
        database_url,
        "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'agent_commands'",
    )
    .context("reading the statistics of agent_commands")
}

/// The two numbers the one-row query `sql` answers.
fn two_counts(database_url: &str, sql: &str) -> anyhow::Result<(u64, u64)> {
    let output = Command::new(binary("psql")?)
        .args(["-At", "-F", " ", "-c", sql, database_url])
        .output()
        .context("running psql")?;
    let out = String::from_utf8_lossy(&output.stdout);
    let mut counts = out.split_whitespace().map(str::parse::<u64>);
    match (counts.next(), counts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        _ => bail!(
            "psql answered {out:?}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn binary(tool: &str) -> anyhow::Result<PathBuf> {
    PG_BIN_DIRS
        .iter()
        .map(|d| PathBuf::from(d).join(tool))
        .find(|p| p.exists())
        .with_context(|| format!("{tool} not found in any of {PG_BIN_DIRS:?}; install postgresql"))
}

/// Fails unless every row the script wrote reached `completed`: an UPDATE matching nothing would
/// make the reference cheaper than what it stands for.
fn check_rows(database_url: &str) -> anyhow::Result<()> {
    let (incomplete, total) = two_counts(
        database_url,
        "SELECT count(*) FILTER (WHERE status <> 'completed'), count(*) FROM agent_commands \
         WHERE action = 'pgbench'",
    )?;
    if incomplete > 0 || total == 0 {
        bail!("the pgbench script left {incomplete} of its {total} rows incomplete");
    }
    Ok(())
}

/// Runs `commands` scripted commands of `updates` UPDATEs each over `clients` connections;
/// returns commands per second.
pub fn command_writes(
    database_url: &str,
    clients: usize,
    commands: usize,
    updates: usize,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("command.sql");
    std::fs::write(&path, script(updates)?)?;
    let per_client = commands.div_ceil(clients);
    let threads = clients.min(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let output = Command::new(binary("pgbench")?)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&path)
        .args(["-c", &clients.to_string(), "-j", &threads.to_string()])
        .args(["-t", &per_client.to_string()])
        .arg(database_url)
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tps =
        parse_tps(&stdout).with_context(|| format!("no tps in pgbench's output:\n{stdout}"))?;
    check_rows(database_url)?;
    Ok(tps)
}

/// The `tps = N (without initial connection time)` figure.
fn parse_tps(out: &str) -> Option<f64> {
    out.lines()
        .filter(|l| l.starts_with("tps = "))
        .find(|l| l.contains("without initial connection time"))
        .or_else(|| out.lines().find(|l| l.starts_with("tps = ")))?
        .strip_prefix("tps = ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tps_without_connection_time() {
        let out = "latency average = 1.2 ms\ntps = 4321.5 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(4321.5));
        assert_eq!(parse_tps("nothing"), None);
    }
}
