//! The overview's sampler: on every replica, just after each minute ends, asks the store to
//! sample that minute (the first replica to do so wins, see [`streamspace_store::Stats`]) and
//! deletes samples older than the longest window the overview shows.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use streamspace_proto::api::{OVERVIEW_MAX_HOURS, OVERVIEW_SAMPLE_SECS};
use streamspace_store::Store;
use tokio_util::sync::CancellationToken;

/// How long after a minute ends it is sampled, so that what finished at its very end (by the
/// database's clock, which may run a little behind ours) is counted in it.
const SETTLE: Duration = Duration::from_secs(2);

/// Samples every minute until `stop`. `now` is the wall clock.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    now: impl Fn() -> DateTime<Utc> + Send + 'static,
    stop: CancellationToken,
) {
    let keep = chrono::Duration::hours(i64::from(OVERVIEW_MAX_HOURS) + 1);
    loop {
        let Some((end, wait)) = next_sample(now()) else {
            return;
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        match store.record_sample(end).await {
            Ok(written) => tracing::debug!(%end, written, "overview sample"),
            Err(e) => tracing::warn!(%end, error = %e, "sampling the overview failed"),
        }
        if let Err(e) = store.purge_samples(end - keep).await {
            tracing::warn!(error = %e, "deleting old overview samples failed");
        }
    }
}

/// At `t`: the end of the minute `t` is in (a minute that has just ended at `t` exactly is
/// the next one's start), and how long to wait before sampling it.
fn next_sample(t: DateTime<Utc>) -> Option<(DateTime<Utc>, Duration)> {
    let width = i64::from(OVERVIEW_SAMPLE_SECS);
    let end = DateTime::from_timestamp(t.timestamp().div_euclid(width) * width + width, 0)?;
    Some((end, (end - t).to_std().unwrap_or_default() + SETTLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, millis: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, millis * 1_000_000).expect("a valid time")
    }

    #[test]
    fn each_minute_is_sampled_once_just_after_its_end() {
        let minute = 1_800_000_000; // a whole minute since the epoch
        let (end, wait) = next_sample(at(minute + 30, 250)).expect("a sample");
        assert_eq!(end, at(minute + 60, 0));
        assert_eq!(wait, Duration::from_millis(29_750) + SETTLE);

        // Woken just after the minute it waited for, the sampler waits for the next one, so no
        // minute is sampled twice by one replica, and none is skipped.
        let woken = end + chrono::Duration::from_std(SETTLE).expect("small");
        let (next, _) = next_sample(woken).expect("a sample");
        assert_eq!(next, at(minute + 120, 0));

        let (end, wait) = next_sample(at(minute, 0)).expect("a sample");
        assert_eq!(
            (end, wait),
            (at(minute + 60, 0), Duration::from_secs(60) + SETTLE)
        );
    }
}
