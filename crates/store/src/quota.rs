//! Quotas: the limits set on users and groups, and what a user's sessions hold.
//!
//! [`Quotas`] is a supertrait of [`crate::Store`]. It only reads and sets limits and measures
//! use; the limit itself is enforced where sessions are created ([`crate::Store::create_session`]),
//! inside the creating transaction and under a lock on the owner's row, so that concurrent
//! creations by one user cannot together overshoot. Which limit applies (own, groups', default)
//! is [`QuotaLimits::effective`]'s rule; the store hands over the levels it reads.

use async_trait::async_trait;
pub use streamspace_proto::api::SessionSize;
use streamspace_proto::api::{QuotaLimits, QuotaUsage, SetQuota};
use uuid::Uuid;

use crate::{AuditEntry, Result, StoreError};

/// The limits set on a user and on each of their groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaSources {
    pub own: QuotaLimits,
    pub groups: Vec<QuotaLimits>,
}

/// A quota dimension, for [`StoreError::QuotaExceeded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaDimension {
    Sessions,
    CpuMillis,
    MemoryMib,
}

impl QuotaDimension {
    /// The unit in words, as an error message names it.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Sessions => "sessions",
            Self::CpuMillis => "CPU millis",
            Self::MemoryMib => "MiB of memory",
        }
    }
}

impl std::fmt::Display for QuotaDimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sessions => "max_sessions",
            Self::CpuMillis => "max_cpu_millis",
            Self::MemoryMib => "max_memory_mib",
        })
    }
}

/// Limits and use. All methods are safe to call from several replicas at once.
#[async_trait]
pub trait Quotas: Send + Sync {
    /// The limits set on the user (by id) and on each of their groups; `NotFound` if no such user.
    async fn quota_sources(&self, user_id: Uuid) -> Result<QuotaSources>;
    /// Limits set on the user itself; `NotFound` if no such user.
    async fn user_quota(&self, username: &str) -> Result<QuotaLimits>;
    /// Applies `change` and returns the user's own limits after it.
    async fn set_user_quota(
        &self,
        username: &str,
        change: &SetQuota,
        audit: &AuditEntry,
    ) -> Result<QuotaLimits>;
    /// Limits set on the group; `NotFound` if no such group.
    async fn group_quota(&self, name: &str) -> Result<QuotaLimits>;
    /// Applies `change` and returns the group's limits after it.
    async fn set_group_quota(
        &self,
        name: &str,
        change: &SetQuota,
        audit: &AuditEntry,
    ) -> Result<QuotaLimits>;
    /// What the user's sessions that are not terminal hold, each sized by its template's
    /// resources, or by `default_size` where the template sets none (or is gone).
    async fn quota_usage(&self, user_id: Uuid, default_size: SessionSize) -> Result<QuotaUsage>;
}

/// Limits as read from a row (`max_sessions`, `max_cpu_millis`, `max_memory_mib`).
pub(crate) type LimitsRow = (Option<i64>, Option<i64>, Option<i64>);

pub(crate) fn limits_from_row((s, c, m): LimitsRow) -> Result<QuotaLimits> {
    let narrow = |v: Option<i64>| {
        v.map(u32::try_from)
            .transpose()
            .map_err(|_| StoreError::Corrupt(format!("quota limit {v:?} out of range")))
    };
    Ok(QuotaLimits {
        max_sessions: narrow(s)?,
        max_cpu_millis: narrow(c)?,
        max_memory_mib: narrow(m)?,
    })
}

/// Usage as read by [`sql::USAGE`]: (sessions, cpu_millis, memory_mib).
pub(crate) fn usage_from_row((s, c, m): (i64, i64, i64)) -> QuotaUsage {
    let wide = |v: i64| u64::try_from(v).unwrap_or(0);
    QuotaUsage {
        sessions: wide(s),
        cpu_millis: wide(c),
        memory_mib: wide(m),
    }
}

/// Refuses a session of `size` for a user who holds `usage` under `limits`, naming the first
/// dimension it would overshoot.
pub(crate) fn check(limits: &QuotaLimits, usage: &QuotaUsage, size: SessionSize) -> Result<()> {
    let dimensions = [
        (
            QuotaDimension::Sessions,
            limits.max_sessions,
            usage.sessions,
            1,
        ),
        (
            QuotaDimension::CpuMillis,
            limits.max_cpu_millis,
            usage.cpu_millis,
            u64::from(size.cpu_millis),
        ),
        (
            QuotaDimension::MemoryMib,
            limits.max_memory_mib,
            usage.memory_mib,
            u64::from(size.memory_mib),
        ),
    ];
    for (dimension, limit, used, needed) in dimensions {
        if let Some(limit) = limit.map(u64::from)
            && used.saturating_add(needed) > limit
        {
            return Err(StoreError::QuotaExceeded {
                dimension,
                limit,
                used,
                needed,
            });
        }
    }
    Ok(())
}

/// Statements of the quota half that both backends share. Limits are read as BIGINT so one
/// row type decodes on both backends (PostgreSQL's `max_sessions` is an INTEGER).
pub(crate) mod sql {
    macro_rules! limit_columns {
        ($t:literal) => {
            concat!(
                "CAST(",
                $t,
                "max_sessions AS BIGINT), CAST(",
                $t,
                "max_cpu_millis AS BIGINT), CAST(",
                $t,
                "max_memory_mib AS BIGINT)"
            )
        };
    }
    macro_rules! limit_set {
        () => {
            " SET max_sessions = CASE WHEN $2 THEN $3 ELSE max_sessions END, \
             max_cpu_millis = CASE WHEN $4 THEN $5 ELSE max_cpu_millis END, \
             max_memory_mib = CASE WHEN $6 THEN $7 ELSE max_memory_mib END"
        };
    }

    pub(crate) const USER_LIMITS_BY_ID: &str =
        concat!("SELECT ", limit_columns!(""), " FROM users WHERE id = $1");
    pub(crate) const USER_LIMITS: &str = concat!(
        "SELECT ",
        limit_columns!(""),
        " FROM users WHERE username = $1"
    );
    pub(crate) const USER_GROUP_LIMITS: &str = concat!(
        "SELECT ",
        limit_columns!("g."),
        " FROM group_members m JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1"
    );
    pub(crate) const GROUP_LIMITS: &str = concat!(
        "SELECT ",
        limit_columns!(""),
        " FROM groups WHERE name = $1"
    );
    pub(crate) const USER_LIMITS_SET: &str =
        concat!("UPDATE users", limit_set!(), " WHERE username = $1");
    pub(crate) const GROUP_LIMITS_SET: &str =
        concat!("UPDATE groups", limit_set!(), " WHERE name = $1");
    /// $1 the user, $2 and $3 the default CPU and memory of a session whose template has none.
    pub(crate) const USAGE: &str = "SELECT COUNT(*), \
         CAST(COALESCE(SUM(COALESCE(t.cpu_millis, $2)), 0) AS BIGINT), \
         CAST(COALESCE(SUM(COALESCE(t.memory_mib, $3)), 0) AS BIGINT) \
         FROM sessions s LEFT JOIN templates t ON t.name = s.template \
         WHERE s.owner_id = $1 AND s.state NOT IN ('terminated', 'failed')";
}
