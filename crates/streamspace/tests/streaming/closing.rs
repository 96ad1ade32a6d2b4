//! A viewer lives only while its session is `running`: whatever moves the session out of it — a
//! stop or hibernate command's result, a failure the agent observes — closes every viewer of it
//! with the reason, on the agent's replica and on the other one. The sessions here are echo
//! servers that never close a connection themselves, so only the control plane can end these
//! viewers.
//!
//! Not here: the idle timer hibernates only a session that has had no viewer for its timeout
//! (`crates/agent/src/idle.rs`), so it has none to close, and its report takes the same path as
//! the failure below; deleting the agent of a session that is not terminal is refused, checked
//! below with the viewers still working.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use streamspace_client::Client;
use streamspace_proto::api::SessionState;
use streamspace_testkit::redis::RedisServer;
use streamspace_testkit::{PgCluster, wait_until};
use uuid::Uuid;

use super::replicas::Pair;
use super::viewer::{self, Rfb};
use super::{START_TIMEOUT, targets};

const AGENT: &str = "closing-agent";

/// A working viewer of `session` through each replica.
async fn viewers(pair: &Pair, session: Uuid) -> anyhow::Result<Vec<Rfb>> {
    let mut views = Vec::new();
    for (i, admin) in pair.admins.iter().enumerate() {
        let info = admin.connect_session(session).await?;
        let (ws, _) = viewer::open(&info.url, None).await?;
        let mut view = Rfb::new(ws);
        view.echo(&format!("through replica {}", i + 1)).await?;
        views.push(view);
    }
    Ok(views)
}

/// Every one of `views` (one per replica) is closed normally, for `reason`.
async fn all_closed(views: &mut [Rfb], reason: &str) -> anyhow::Result<()> {
    for (i, view) in views.iter_mut().enumerate() {
        let closed = viewer::close_frame(&mut view.ws, START_TIMEOUT)
            .await
            .with_context(|| format!("the viewer through replica {} ({reason})", i + 1))?;
        ensure!(
            closed == (1000, reason.to_owned()),
            "the viewer through replica {} closed with {closed:?}; expected 1000 {reason:?}",
            i + 1
        );
    }
    Ok(())
}

async fn running(api: &Client) -> anyhow::Result<Uuid> {
    let session = api.create_session("xterm").await?;
    api.wait_for_session(
        session.id,
        SessionState::Running,
        Instant::now() + START_TIMEOUT,
    )
    .await?;
    Ok(session.id)
}

async fn reaches(api: &Client, id: Uuid, state: SessionState) -> anyhow::Result<()> {
    api.wait_for_session(id, state, Instant::now() + START_TIMEOUT)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_on_every_replica_close_whatever_ends_the_session() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let redis = RedisServer::start()?;
    let mut h = super::common::harness()?;
    let db = pg.create_database()?;
    let runtime = targets::TargetRuntime::new(vec![targets::echo().await?; 2]);
    // The replicas' own check of their viewers' sessions is an hour apart: only the change
    // itself (and its announcement to the other replica) can close these viewers in time.
    let extra = ["--sweep-interval", "1h"];
    let pair = Pair::start(&mut h, &db, &redis.url(), &extra, AGENT, runtime).await?;
    let logs = || pair.logs();
    let [r1, r2] = &pair.admins;

    // Hibernated by a command created on replica 2: its result, recorded on replica 1.
    let id = running(r1).await.with_context(logs)?;
    let mut views = viewers(&pair, id).await.with_context(logs)?;
    r2.hibernate_session(id).await?;
    all_closed(&mut views, "the session is hibernated")
        .await
        .with_context(logs)?;
    reaches(r2, id, SessionState::Hibernated).await?;

    // Woken, watched again; deleting its agent is refused and changes nothing for the viewers.
    r2.wake_session(id).await?;
    reaches(r2, id, SessionState::Running)
        .await
        .with_context(logs)?;
    let mut views = viewers(&pair, id).await.with_context(logs)?;
    let refused = r2.delete_agent(AGENT).await.err().and_then(|e| e.status());
    ensure!(
        refused == Some(409),
        "deleting the agent of a running session answered {refused:?}"
    );
    for view in &mut views {
        view.echo("after the refused deletion")
            .await
            .with_context(logs)?;
    }

    // Stopped through replica 1.
    r1.stop_session(id).await?;
    all_closed(&mut views, "the session is terminated")
        .await
        .with_context(logs)?;
    reaches(r1, id, SessionState::Terminated).await?;

    // A session whose VNC server dies: the agent reports it failed.
    let id = running(r2).await.with_context(logs)?;
    let mut views = viewers(&pair, id).await.with_context(logs)?;
    pair.runtime.fail(id)?;
    all_closed(&mut views, "the session is failed")
        .await
        .with_context(logs)?;
    reaches(r1, id, SessionState::Failed).await?;
    pair.stop_agent().await
}

/// With Redis gone the replica holding the agent cannot announce a hibernation; the other
/// replica's own check of its viewers' sessions closes its viewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_closes_its_viewers_when_the_announcement_is_lost() -> anyhow::Result<()> {
    let pg = PgCluster::start()?;
    let mut redis = RedisServer::start()?;
    let mut h = super::common::harness()?;
    let db = pg.create_database()?;
    let runtime = targets::TargetRuntime::new([targets::echo().await?]);
    let extra = ["--sweep-interval", "1s"];
    let pair = Pair::start(&mut h, &db, &redis.url(), &extra, AGENT, runtime).await?;
    let logs = || pair.logs();
    let [r1, _] = &pair.admins;
    let id = running(r1).await.with_context(logs)?;
    let mut views = viewers(&pair, id).await.with_context(logs)?;

    redis.kill();
    for admin in &pair.admins {
        wait_until("Redis to be missed", Duration::from_secs(30), || async {
            let ready = admin.readyz().await.ok()?;
            (ready.redis.as_deref() == Some("degraded")).then_some(())
        })
        .await
        .with_context(logs)?;
    }
    for view in &mut views {
        view.echo("Redis is gone").await.with_context(logs)?;
    }
    r1.hibernate_session(id).await?;
    all_closed(&mut views, "the session is hibernated")
        .await
        .with_context(logs)?;
    pair.stop_agent().await
}
