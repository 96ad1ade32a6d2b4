//! The operators' overview: how the whole system has been doing over the last hours, one
//! point per interval, and what it is doing now.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The shortest interval the overview has: the control plane samples the system once a minute.
pub const OVERVIEW_SAMPLE_SECS: u32 = 60;
/// The longest window the overview covers (and how long samples are kept): a week.
pub const OVERVIEW_MAX_HOURS: u32 = 168;
/// How many points the overview answers at most; a longer window gets wider intervals.
pub const OVERVIEW_MAX_POINTS: u32 = 180;

/// `?hours=`: the window, from 1 to [`OVERVIEW_MAX_HOURS`] hours back from now (default 6).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    /// Hours back from now: 1 to 168, default 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<u32>,
}

/// One interval of the overview. Sessions and agents are counted at the interval's end;
/// commands over the whole interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverviewPoint {
    /// The interval's end.
    pub at: DateTime<Utc>,
    pub sessions_pending: u64,
    pub sessions_starting: u64,
    pub sessions_running: u64,
    pub sessions_hibernated: u64,
    /// Sessions that failed during the interval.
    pub sessions_failed: u64,
    pub agents_online: u64,
    /// Commands created during the interval.
    pub commands_created: u64,
    /// Commands that failed during the interval.
    pub commands_failed: u64,
}

impl OverviewPoint {
    /// Folds the next, later sample of the same interval into this one: the counts at the end
    /// are the later sample's, the counts over time add up.
    pub fn then(self, later: OverviewPoint) -> OverviewPoint {
        OverviewPoint {
            sessions_failed: self.sessions_failed + later.sessions_failed,
            commands_created: self.commands_created + later.commands_created,
            commands_failed: self.commands_failed + later.commands_failed,
            ..later
        }
    }
}

/// The overview's answer: the history, oldest first (intervals without a sample — the control
/// plane was down — are missing, not zero), and the counts of this moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    /// The window asked for, in hours.
    pub hours: u32,
    /// The width of each point's interval, in seconds (a multiple of 60).
    pub interval_secs: u32,
    pub points: Vec<OverviewPoint>,
    /// Sessions by state now, every state named (terminal ones included).
    pub sessions_now: std::collections::BTreeMap<String, u64>,
    /// Commands not finished yet, by status (`pending`, `sent`, `acknowledged`).
    pub commands_in_flight: std::collections::BTreeMap<String, u64>,
}

/// The interval that fits `hours` into at most [`OVERVIEW_MAX_POINTS`] points: a whole number of
/// minutes.
pub fn overview_interval_secs(hours: u32) -> u32 {
    let minutes = (hours * 60).div_ceil(OVERVIEW_MAX_POINTS).max(1);
    minutes * OVERVIEW_SAMPLE_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_whole_minutes_and_points_stay_under_the_cap() {
        assert_eq!(overview_interval_secs(1), 60);
        assert_eq!(overview_interval_secs(3), 60);
        assert_eq!(overview_interval_secs(6), 120);
        assert_eq!(overview_interval_secs(OVERVIEW_MAX_HOURS), 56 * 60);
        for hours in 1..=OVERVIEW_MAX_HOURS {
            let secs = overview_interval_secs(hours);
            assert_eq!(secs % 60, 0);
            assert!(hours * 3600 / secs <= OVERVIEW_MAX_POINTS, "{hours}");
        }
    }

    #[test]
    fn a_later_sample_gives_the_counts_at_the_end_and_adds_the_counts_over_time() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let first = OverviewPoint {
            at,
            sessions_running: 5,
            sessions_failed: 1,
            commands_created: 10,
            commands_failed: 2,
            ..OverviewPoint::default()
        };
        let later = OverviewPoint {
            at: at + chrono::Duration::minutes(1),
            sessions_running: 3,
            sessions_failed: 2,
            commands_created: 4,
            ..OverviewPoint::default()
        };
        let both = first.then(later);
        assert_eq!(both.at, later.at);
        assert_eq!(both.sessions_running, 3);
        assert_eq!(both.sessions_failed, 3);
        assert_eq!(both.commands_created, 14);
        assert_eq!(both.commands_failed, 2);
    }
}
