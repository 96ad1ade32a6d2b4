//! The overview's samples (migration 0012) on both backends: one per minute whichever replica
//! writes it, counting sessions and agents as they are and commands within the minute; read
//! back in order, purged by age; and the live counts beside them.

use anyhow::{Context, Result, ensure};
use chrono::{Duration, Utc};
use serde_json::json;
use streamspace_store::{CommandOutcome, migrate};

use super::support::{Db, audit, new_session, register};

pub async fn samples_count_the_system_once_per_minute(db: &Db) -> Result<()> {
    let store = db.store().await?;
    register(&*store, "a1", 5).await?;
    let (_, start) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let running = CommandOutcome::Completed(json!({"vnc_address": "10.0.0.1:5901"}));
    store
        .finish_command("a1", start.command_id, &running)
        .await?;
    let (_, start) = store
        .create_session(&new_session("alice"), &audit())
        .await?;
    let failed = CommandOutcome::Failed("no image".into());
    store
        .finish_command("a1", start.command_id, &failed)
        .await?;
    store.create_session(&new_session("bob"), &audit()).await?;

    // A minute that ends half a minute from now holds every command above.
    let end = Utc::now() + Duration::seconds(30);
    ensure!(
        store.record_sample(end).await?,
        "the first sample of a minute is written"
    );
    ensure!(
        !store.record_sample(end).await?,
        "a minute that has a sample keeps it"
    );
    let earlier = end - Duration::hours(1);
    ensure!(store.record_sample(earlier).await?);

    let samples = store.samples_since(end - Duration::hours(2)).await?;
    ensure!(samples.len() == 2, "{samples:#?}");
    let (old, new) = (samples[0], samples[1]);
    ensure!(old.at.timestamp() == earlier.timestamp(), "{old:?}");
    ensure!(new.at.timestamp() == end.timestamp(), "{new:?}");
    ensure!(
        new.sessions_running == 1
            && new.sessions_pending + new.sessions_starting == 1
            && new.sessions_hibernated == 0
            && new.sessions_failed == 1
            && new.agents_online == 1
            && new.commands_created == 3
            && new.commands_failed == 1,
        "{new:?}"
    );
    // Commands and failures belong to their minute; an hour ago there were none.
    ensure!(
        old.commands_created == 0 && old.commands_failed == 0 && old.sessions_failed == 0,
        "{old:?}"
    );

    ensure!(
        store
            .samples_since(end - Duration::minutes(30))
            .await?
            .len()
            == 1
    );
    ensure!(store.purge_samples(end - Duration::minutes(30)).await? == 1);
    let left = store.samples_since(end - Duration::hours(2)).await?;
    ensure!(left.len() == 1 && left[0].at.timestamp() == end.timestamp());

    let live = store.live_counts().await?;
    let sessions = |s: &str| {
        live.sessions
            .get(s)
            .copied()
            .context("every state is named")
    };
    ensure!(
        sessions("running")? == 1 && sessions("failed")? == 1,
        "{live:?}"
    );
    ensure!(
        sessions("terminated")? == 0 && live.sessions.len() == 6,
        "{live:?}"
    );
    ensure!(
        live.commands_in_flight.values().sum::<u64>() == 1 && live.commands_in_flight.len() == 3,
        "bob's start is the one unfinished command: {live:?}"
    );
    Ok(())
}

pub async fn down_0012_drops_the_samples(db: &Db) -> Result<()> {
    let store = db.store().await?;
    ensure!(store.record_sample(Utc::now()).await?);
    let newest = migrate::status(&db.url)
        .await?
        .last()
        .map(|m| m.version)
        .context("no migrations")?;
    migrate::down(&db.url, u32::try_from(newest - 11)?).await?;
    ensure!(
        !db.schema()
            .await?
            .iter()
            .any(|t| t.contains("stats_samples")),
        "stats_samples survived its down migration"
    );
    migrate::up(&db.url).await?;
    ensure!(
        db.store()
            .await?
            .samples_since(Utc::now() - Duration::hours(1))
            .await?
            .is_empty()
    );
    Ok(())
}
