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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use streamspace_store::{AuditEntry, NewRecording, Store};
    use uuid::Uuid;

    use super::*;
    use crate::config::RecordingStoreConfig;

    /// A recording of `bytes` stored in `storage`, finished unless `live`.
    async fn recording(
        store: &dyn Store,
        storage: &dyn RecordingStorage,
        live: bool,
    ) -> anyhow::Result<String> {
        let (id, session) = (Uuid::now_v7(), Uuid::now_v7());
        let key = crate::recording::storage::key(session, id);
        let new = NewRecording {
            id,
            session_id: session,
            owner_id: None,
            viewer_id: Uuid::now_v7(),
            viewer: "alice".into(),
            storage_key: key.clone(),
        };
        let audit = AuditEntry::system("recording.create", id.to_string(), json!({}));
        store.create_recording(&new, &audit).await?;
        let mut writer = storage.create(&key).await?;
        writer.write(b"SSREC\x01").await?;
        writer.finish().await?;
        if !live {
            store.finish_recording(id, 6, true).await?;
        }
        Ok(key)
    }

    #[tokio::test]
    async fn retention_deletes_old_recordings_stream_and_row() -> anyhow::Result<()> {
        let db = streamspace_testkit::TestDatabase::sqlite()?;
        streamspace_store::migrate::up(db.url()).await?;
        let store = streamspace_store::open(db.url()).await?;
        let dir = tempfile::tempdir()?;
        let config = RecordingStoreConfig::Dir(dir.path().join("recordings"));
        let tls = crate::tls::outgoing_config(&crate::config::ServerConfig::default())?;
        let storage = crate::recording::storage::open(Some(&config), &tls)
            .map_err(anyhow::Error::msg)?
            .expect("a directory store is configured");
        let ended = recording(store.as_ref(), storage.as_ref(), false).await?;
        let abandoned = recording(store.as_ref(), storage.as_ref(), true).await?;
        let on_disk = |key: &str| dir.path().join("recordings").join(key).exists();
        assert!(
            on_disk(&ended) && on_disk(&abandoned),
            "both streams are stored"
        );

        let young = purge_recordings(store.as_ref(), storage.as_ref(), Duration::from_secs(3600))
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(young, 0, "recordings younger than the retention stay");
        assert!(on_disk(&ended) && on_disk(&abandoned));

        // Only rows strictly older than the cutoff go, and times have millisecond resolution:
        // a purge in the millisecond of the last write would keep that row. Wait until the
        // database's clock has passed both (a moment), so the purge below sees them expired.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.expired_recordings(0.0, 10).await?.len() < 2 {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the recordings never became older than now"
            );
            tokio::task::yield_now().await;
        }
        let gone = purge_recordings(store.as_ref(), storage.as_ref(), Duration::ZERO)
            .await
            .map_err(anyhow::Error::msg)?;
        assert_eq!(
            gone, 2,
            "the ended one and the one that never ended are deleted"
        );
        assert!(
            !on_disk(&ended) && !on_disk(&abandoned),
            "with their streams"
        );
        assert!(
            store.expired_recordings(0.0, 10).await?.is_empty(),
            "and their rows"
        );
        Ok(())
    }
}
