//! `GET /api/v1/overview`: how the whole system has been doing over the last hours (from the
//! samples [`crate::overview`] writes once a minute) and what it is doing now. Operators and
//! admins only, by the router.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use streamspace_proto::api::{
    OVERVIEW_MAX_HOURS, Overview, OverviewPoint, OverviewQuery, overview_interval_secs,
};

use super::ApiQuery;
use crate::error::ApiError;
use crate::state::AppState;

/// The window when `?hours=` is not given.
const DEFAULT_HOURS: u32 = 6;

#[utoipa::path(
    get,
    path = "/api/v1/overview",
    operation_id = "overview_get",
    tag = "overview",
    summary = "Sessions, agents and commands over the last hours, and now",
    params(OverviewQuery),
    responses(
        (status = 200, description = "The overview: one point per interval, oldest first (an interval the control plane did not sample is missing), and the counts of this moment", body = streamspace_proto::api::Overview),
        (status = 400, description = "A query parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn get(
    State(app): State<AppState>,
    ApiQuery(query): ApiQuery<OverviewQuery>,
) -> Result<Json<Overview>, ApiError> {
    let hours = query.hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=OVERVIEW_MAX_HOURS).contains(&hours) {
        return Err(ApiError::bad_request(format!(
            "hours must be between 1 and {OVERVIEW_MAX_HOURS}, got {hours}"
        )));
    }
    let since = Utc::now() - chrono::Duration::hours(i64::from(hours));
    let samples = app
        .store
        .samples_since(since)
        .await
        .map_err(|e| ApiError::from_store(e, "reading the overview's samples"))?;
    let live = app
        .store
        .live_counts()
        .await
        .map_err(|e| ApiError::from_store(e, "counting sessions and commands"))?;
    let interval_secs = overview_interval_secs(hours);
    Ok(Json(Overview {
        hours,
        interval_secs,
        points: fold(samples, interval_secs),
        sessions_now: live.sessions,
        commands_in_flight: live.commands_in_flight,
    }))
}

/// Folds minute samples (oldest first) into intervals of `interval_secs` that end on whole
/// multiples of it since the epoch, each dated by its end.
fn fold(samples: Vec<OverviewPoint>, interval_secs: u32) -> Vec<OverviewPoint> {
    let width = i64::from(interval_secs);
    let end_of = |at: DateTime<Utc>| {
        let end = (at.timestamp() + width - 1).div_euclid(width) * width;
        DateTime::from_timestamp(end, 0).unwrap_or(at)
    };
    let mut points: Vec<OverviewPoint> = Vec::new();
    for sample in samples {
        let at = end_of(sample.at);
        match points.last_mut() {
            Some(last) if last.at == at => {
                *last = OverviewPoint {
                    at,
                    ..last.then(sample)
                }
            }
            _ => points.push(OverviewPoint { at, ..sample }),
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(minute: i64, running: u64, created: u64) -> OverviewPoint {
        OverviewPoint {
            at: DateTime::from_timestamp(minute * 60, 0).expect("a valid time"),
            sessions_running: running,
            commands_created: created,
            ..OverviewPoint::default()
        }
    }

    #[test]
    fn minutes_fold_into_intervals_dated_by_their_end() {
        let samples = vec![
            sample(1, 1, 1),
            sample(2, 2, 2),
            sample(3, 3, 3),
            sample(5, 5, 5),
        ];
        let points = fold(samples.clone(), 60);
        assert_eq!(points, samples, "one-minute intervals are the samples");

        let points = fold(samples, 120);
        let got: Vec<(i64, u64, u64)> = points
            .iter()
            .map(|p| {
                (
                    p.at.timestamp() / 60,
                    p.sessions_running,
                    p.commands_created,
                )
            })
            .collect();
        // Minutes 1 and 2 end the interval at 2, minute 3 the one at 4, minute 5 the one at 6.
        assert_eq!(got, vec![(2, 2, 3), (4, 3, 3), (6, 5, 5)]);
    }
}
