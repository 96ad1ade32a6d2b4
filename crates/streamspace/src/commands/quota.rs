//! `quota set` and `quota show`: the limits of users and groups, and a user's use.

use streamspace_proto::api::{GroupQuota, QuotaLimits, QuotaUsage, SetQuota, UserQuota};

use super::client::connect;
use crate::cli::OutputFormat;
use crate::cli_identity::{QuotaCommand, QuotaTarget};
use crate::output::{print_rows, terminal_safe};

pub async fn run(cmd: QuotaCommand) -> anyhow::Result<()> {
    match cmd {
        QuotaCommand::Set {
            target,
            max_sessions,
            max_cpu_millis,
            max_memory_mib,
            clear_max_sessions,
            clear_max_cpu_millis,
            clear_max_memory_mib,
            client,
        } => {
            let change = |value: Option<u32>, clear: bool| {
                if clear { Some(None) } else { value.map(Some) }
            };
            let change = SetQuota {
                max_sessions: change(max_sessions, clear_max_sessions),
                max_cpu_millis: change(max_cpu_millis, clear_max_cpu_millis),
                max_memory_mib: change(max_memory_mib, clear_max_memory_mib),
            };
            anyhow::ensure!(
                change != SetQuota::default(),
                "nothing to change: name a limit (--max-sessions, --max-cpu-millis, \
                 --max-memory-mib) or one to clear (--clear-max-…)"
            );
            let api = connect(&client)?;
            match target {
                QuotaTarget {
                    user: Some(user), ..
                } => print_user(client.output, &api.set_user_quota(&user, &change).await?),
                QuotaTarget {
                    group: Some(group), ..
                } => print_group(client.output, &api.set_group_quota(&group, &change).await?),
                _ => unreachable!("clap requires exactly one of --user and --group"),
            }
        }
        QuotaCommand::Show { target, client } => {
            let api = connect(&client)?;
            match target {
                QuotaTarget {
                    user: Some(user), ..
                } => print_user(client.output, &api.get_user_quota(&user).await?),
                QuotaTarget {
                    group: Some(group), ..
                } => print_group(client.output, &api.get_group_quota(&group).await?),
                _ => unreachable!("clap requires exactly one of --user and --group"),
            }
        }
    }
}

/// The three dimensions of `limits`, each with its name.
fn dimensions(limits: &QuotaLimits) -> [(&'static str, Option<u32>); 3] {
    [
        ("sessions", limits.max_sessions),
        ("cpu_millis", limits.max_cpu_millis),
        ("memory_mib", limits.max_memory_mib),
    ]
}

fn used(usage: &QuotaUsage) -> [u64; 3] {
    [usage.sessions, usage.cpu_millis, usage.memory_mib]
}

fn limit_or(value: Option<u32>, none: &str) -> String {
    value.map_or_else(|| none.to_owned(), |v| v.to_string())
}

fn print_user(output: OutputFormat, quota: &UserQuota) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(quota)?);
        return Ok(());
    }
    println!("quota of user {}", terminal_safe(&quota.username));
    let rows = dimensions(&quota.limits)
        .into_iter()
        .zip(dimensions(&quota.effective))
        .zip(used(&quota.usage))
        .map(|(((name, own), (_, effective)), used)| {
            vec![
                name.to_owned(),
                limit_or(own, "inherited"),
                limit_or(effective, "unlimited"),
                used.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    print_rows(&["LIMIT", "OWN", "EFFECTIVE", "USED"], &rows);
    Ok(())
}

fn print_group(output: OutputFormat, quota: &GroupQuota) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(quota)?);
        return Ok(());
    }
    println!("quota of group {}", terminal_safe(&quota.name));
    let rows = dimensions(&quota.limits)
        .into_iter()
        .map(|(name, limit)| vec![name.to_owned(), limit_or(limit, "-")])
        .collect::<Vec<_>>();
    print_rows(&["LIMIT", "VALUE"], &rows);
    Ok(())
}

/// The limits that apply to you and your use, under `whoami`'s table.
pub fn print_own(quota: &QuotaLimits, usage: &QuotaUsage) {
    let rows = dimensions(quota)
        .into_iter()
        .zip(used(usage))
        .map(|((name, limit), used)| {
            vec![
                name.to_owned(),
                limit_or(limit, "unlimited"),
                used.to_string(),
            ]
        })
        .collect::<Vec<_>>();
    print_rows(&["QUOTA", "LIMIT", "USED"], &rows);
}
