//! Samples of the whole system for the operators' overview: once a minute, some replica counts
//! sessions by state, agents online and the minute's commands into one row of
//! `stats_samples` (the first replica to write a minute wins); the overview reads them back.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use streamspace_proto::api::OverviewPoint;

use crate::Result;

/// Writing and reading the overview's samples. Safe to call from several replicas at once.
#[async_trait]
pub trait Stats: Send + Sync {
    /// Samples the minute that ends at `end` (sessions and agents as they are now, commands
    /// created and failed within the minute before `end`); false if that minute already has a
    /// sample, which is kept.
    async fn record_sample(&self, end: DateTime<Utc>) -> Result<bool>;
    /// The samples whose minute ends after `since`, oldest first.
    async fn samples_since(&self, since: DateTime<Utc>) -> Result<Vec<OverviewPoint>>;
    /// Deletes the samples whose minute ends before `before`; how many went.
    async fn purge_samples(&self, before: DateTime<Utc>) -> Result<u64>;
    /// Sessions by state and unfinished commands by status, now.
    async fn live_counts(&self) -> Result<LiveCounts>;
}

/// What [`Stats::live_counts`] answers. Every state and status is present, zero or not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveCounts {
    pub sessions: BTreeMap<String, u64>,
    pub commands_in_flight: BTreeMap<String, u64>,
}

pub(crate) mod sql {
    pub(crate) const SAMPLES_SINCE: &str = "SELECT at, sessions_pending, sessions_starting, \
         sessions_running, sessions_hibernated, sessions_failed, agents_online, \
         commands_created, commands_failed FROM stats_samples WHERE at > $1 ORDER BY at";
    pub(crate) const SAMPLES_PURGE: &str = "DELETE FROM stats_samples WHERE at < $1";
    pub(crate) const SESSIONS_BY_STATE: &str =
        "SELECT state, COUNT(*) FROM sessions GROUP BY state";
    pub(crate) const COMMANDS_IN_FLIGHT: &str = "SELECT status, COUNT(*) FROM agent_commands \
         WHERE status IN ('pending', 'sent', 'acknowledged') GROUP BY status";
}

/// The sample statement of a backend: `$1` the minute's end (Unix seconds), `$2`/`$3` the
/// minute's start and end as timestamps. A minute that has a sample is not counted again (so
/// the replicas that lose the race do not scan the tables). Failed commands are found through
/// the status index; created ones through its `(status, created_at)` order.
pub(crate) fn sample_insert(start: &str, end: &str) -> String {
    format!(
        "INSERT INTO stats_samples (at, sessions_pending, sessions_starting, sessions_running, \
         sessions_hibernated, sessions_failed, agents_online, commands_created, commands_failed) \
         SELECT $1, s.pending, s.starting, s.running, s.hibernated, s.failed, a.online, \
         c.created, f.failed FROM \
         (SELECT COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0) AS pending, \
         COALESCE(SUM(CASE WHEN state = 'starting' THEN 1 ELSE 0 END), 0) AS starting, \
         COALESCE(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END), 0) AS running, \
         COALESCE(SUM(CASE WHEN state = 'hibernated' THEN 1 ELSE 0 END), 0) AS hibernated, \
         COALESCE(SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), 0) AS failed \
         FROM sessions WHERE state IN ('pending', 'starting', 'running', 'hibernated') \
         OR (state = 'failed' AND updated_at >= {start} AND updated_at < {end})) s, \
         (SELECT COUNT(*) AS online FROM agents WHERE status = 'online') a, \
         (SELECT COUNT(*) AS created FROM agent_commands WHERE status IN \
         ('pending', 'sent', 'acknowledged', 'completed', 'failed') \
         AND created_at >= {start} AND created_at < {end}) c, \
         (SELECT COUNT(*) AS failed FROM agent_commands WHERE status = 'failed' \
         AND completed_at >= {start} AND completed_at < {end}) f \
         WHERE NOT EXISTS (SELECT 1 FROM stats_samples WHERE at = $1) \
         ON CONFLICT (at) DO NOTHING"
    )
}

/// Whole seconds since the epoch, as the `at` column keeps them.
pub(crate) fn epoch(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// A count column (never negative) as the API gives it.
pub(crate) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
