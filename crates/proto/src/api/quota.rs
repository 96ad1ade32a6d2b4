//! Quotas: how many sessions, and how much CPU and memory, one user's sessions may hold.
//!
//! A limit is set per user, per group, and server-wide as a default. The limit that applies to
//! a user ([`QuotaLimits::effective`]) is decided per dimension: the user's own if set, else the
//! most generous value among their groups that set one, else the server's default; a dimension
//! unset everywhere is unlimited. Usage counts every session of the user that is not terminal
//! (hibernated ones too: they hold their resources), sized by its template's resources.

use serde::{Deserialize, Deserializer, Serialize};

/// Limits at one level (a user, a group, the server default, or the effective result).
/// `None`: no limit at this level (for a user or group: inherit; effective: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaLimits {
    /// Most sessions that are not terminal at once.
    pub max_sessions: Option<u32>,
    /// Most CPU, in thousandths of a core, summed over those sessions.
    pub max_cpu_millis: Option<u32>,
    /// Most memory, in MiB, summed over those sessions.
    pub max_memory_mib: Option<u32>,
}

impl QuotaLimits {
    /// The limits that apply to a user with `own` limits, in `groups`, under `default`: per
    /// dimension, the user's own if set, else the largest any group sets, else the default.
    pub fn effective(own: &Self, groups: &[Self], default: &Self) -> Self {
        let pick = |f: fn(&Self) -> Option<u32>| {
            f(own)
                .or_else(|| groups.iter().filter_map(f).max())
                .or_else(|| f(default))
        };
        Self {
            max_sessions: pick(|l| l.max_sessions),
            max_cpu_millis: pick(|l| l.max_cpu_millis),
            max_memory_mib: pick(|l| l.max_memory_mib),
        }
    }
}

/// What a user's sessions hold now: every session that is not terminal, hibernated included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    pub sessions: u64,
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

/// How much one session holds, as quotas count it: its template's resources, or the server's
/// default size for a dimension the template does not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionSize {
    pub cpu_millis: u32,
    pub memory_mib: u32,
}

/// `GET /api/v1/users/{username}/quota`: the user's own limits, the ones that apply, and use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserQuota {
    pub username: String,
    /// Set on the user itself (`None`: inherited).
    pub limits: QuotaLimits,
    /// What applies after inheritance (`None`: unlimited).
    pub effective: QuotaLimits,
    pub usage: QuotaUsage,
}

/// `GET /api/v1/groups/{name}/quota`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupQuota {
    pub name: String,
    /// `None`: this group has no say in that dimension.
    pub limits: QuotaLimits,
}

/// `PUT /api/v1/users/{username}/quota` and `PUT /api/v1/groups/{name}/quota`: an omitted
/// field stays as it is, `null` clears it (the level inherits again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetQuota {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_sessions: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_cpu_millis: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_memory_mib: Option<Option<u32>>,
}

/// A field that is present is `Some`, even when it is `null` (serde would make that `None`,
/// indistinguishable from an omitted field, which `default` handles).
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_takes_own_then_most_generous_group_then_default_per_dimension() {
        let own = QuotaLimits {
            max_sessions: Some(1),
            ..QuotaLimits::default()
        };
        let groups = [
            QuotaLimits {
                max_cpu_millis: Some(2000),
                max_sessions: Some(9),
                ..QuotaLimits::default()
            },
            QuotaLimits {
                max_cpu_millis: Some(4000),
                ..QuotaLimits::default()
            },
        ];
        let default = QuotaLimits {
            max_sessions: Some(5),
            max_cpu_millis: Some(1000),
            max_memory_mib: Some(512),
        };
        let e = QuotaLimits::effective(&own, &groups, &default);
        assert_eq!(
            e,
            QuotaLimits {
                max_sessions: Some(1),
                max_cpu_millis: Some(4000),
                max_memory_mib: Some(512),
            }
        );
        let none = QuotaLimits::default();
        assert_eq!(QuotaLimits::effective(&none, &[], &none), none);
    }

    #[test]
    fn set_quota_tells_omitted_from_null() {
        let s: SetQuota = serde_json::from_str(r#"{"max_sessions":3,"max_cpu_millis":null}"#)
            .expect("valid in the test");
        assert_eq!(s.max_sessions, Some(Some(3)));
        assert_eq!(s.max_cpu_millis, Some(None));
        assert_eq!(s.max_memory_mib, None);
        assert!(serde_json::from_str::<SetQuota>(r#"{"max_sessions":-1}"#).is_err());
        assert!(serde_json::from_str::<SetQuota>(r#"{"sessions":1}"#).is_err());
    }
}
