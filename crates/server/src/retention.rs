//! Retention: finished commands, ended sessions, audit entries and recordings older than their
//! configured age are deleted, in small batches so no statement holds locks for long. Every
//! replica runs the loop; the store lets one purge at a time (the others skip that round).
//! A recording's stream is deleted from the recording store before its row, so a failure
//! leaves the row to try again next round rather than a stream nothing points to.

use std::sync::Arc;
use std::time::Duration;

use streamspace_store::{Purge, Store};
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::recording::RecordingStorage;

/// Rows deleted per statement.
const BATCH: i64 = 500;
/// Most batches of one kind per round, so one round cannot run for ever behind a backlog.
const MAX_BATCHES: usize = 200;

/// Purges every `config.interval` until `shutdown`; recordings only with a recording store.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    recordings: Option<Arc<dyn RecordingStorage>>,
    config: RetentionConfig,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (what, age) in [
            (Purge::Commands, config.commands),
            (Purge::Sessions, config.sessions),
            (Purge::Audit, config.audit),
        ] {
            let Some(age) = age else { continue };
            if let Err(e) = purge(store.as_ref(), what, age).await {
                tracing::warn!(?what, error = %e, "purging old rows failed; retrying next round");
            }
        }
        if let (Some(storage), Some(age)) = (&recordings, config.recordings)
            && let Err(e) = purge_recordings(store.as_ref(), storage.as_ref(), age).await
        {
            tracing::warn!(error = %e, "purging old recordings failed; retrying next round");
        }
    }
}

/// Deletes the recordings that ended more than `age` ago, streams first; answers how many.
pub(crate) async fn purge_recordings(
    store: &dyn Store,
    storage: &dyn RecordingStorage,
    age: Duration,
) -> Result<u64, String> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let expired = store
            .expired_recordings(age.as_secs_f64(), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        for stored in &expired {
            storage
                .delete(&stored.storage_key)
                .await
                .map_err(|e| e.to_string())?;
            if store
                .forget_recording(stored.recording.id)
                .await
                .map_err(|e| e.to_string())?
            {
                total += 1;
            }
        }
        if expired.len() < BATCH as usize {
            break;
        }
        tokio::task::yield_now().await;
    }
    if total > 0 {
        metrics::counter!("streamspace_retention_deleted_total", "what" => "recordings")
            .increment(total);
        tracing::info!(deleted = total, older_than = ?age, "purged old recordings");
    }
    Ok(total)
}

/// Deletes what is older than `age`, batch by batch; answers how many rows went.
async fn purge(
    store: &dyn Store,
    what: Purge,
    age: Duration,
) -> Result<u64, streamspace_store::StoreError> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        match store.purge(what, age.as_secs_f64(), BATCH).await? {
            None => break,
            Some(n) => {
                total += n;
                metrics::counter!("streamspace_retention_deleted_total", "what" => label(what))
                    .increment(n);
                if n < BATCH as u64 {
                    break;
                }
            }
        }
        tokio::task::yield_now().await;
    }
    if total > 0 {
        tracing::info!(?what, deleted = total, older_than = ?age, "purged old rows");
    }
    Ok(total)
}

fn label(what: Purge) -> &'static str {
    match what {
        Purge::Commands => "commands",
        Purge::Sessions => "sessions",
        Purge::Audit => "audit",
    }
}
