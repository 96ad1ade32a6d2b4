//! Agent replicas' coordination Lease against a fake API server (no API server can run here;
//! see `kube_api`): acquisition, renewal, takeover after expiry, clean release, and the holder
//! stepping down when it cannot renew — on tokio's paused clock wherever time matters.

mod kube_api;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use kube_api::FakeApi;
use serde_json::{Value, json};
use streamspace_agent::leadership::lease::{Election, LeaseConfig, LeaseElector};
use streamspace_agent::leadership::{Leadership, LeaseLeadership};
use tokio_util::sync::CancellationToken;

const NS: &str = "agents";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/agents/leases";
const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/agents/leases/streamspace-agent-edge-1";

fn elector(api: &FakeApi, holder: &str) -> LeaseElector {
    let mut config = LeaseConfig::new(NS, "edge-1");
    config.holder = holder.to_owned();
    config.duration = Duration::from_secs(1);
    config.renew_every = Duration::from_millis(50);
    config.renew_deadline = Duration::from_millis(600);
    LeaseElector::new(api.client(NS), config)
}

fn lease(api: &FakeApi) -> Result<Value> {
    api.object("leases", "streamspace-agent-edge-1")
        .context("the lease exists")
}

fn last_write(api: &FakeApi) -> Result<(Method, String, Value)> {
    api.log()
        .into_iter()
        .rev()
        .find(|r| r.method != Method::GET)
        .and_then(|r| Some((r.method.clone(), r.path.clone(), r.body?)))
        .context("a write")
}

#[tokio::test]
async fn the_first_replica_creates_the_lease_and_renews_it_with_its_resource_version() -> Result<()>
{
    let api = FakeApi::new();
    let mut a = elector(&api, "pod-a-1");
    assert_eq!(a.try_acquire_or_renew().await?, Election::Leading);
    let (method, path, created) = last_write(&api)?;
    assert_eq!((method, path.as_str()), (Method::POST, LEASES));
    assert_eq!(
        created["metadata"]["name"],
        json!("streamspace-agent-edge-1")
    );
    assert_eq!(
        created["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "streamspace"})
    );
    let spec = &created["spec"];
    assert_eq!(spec["holderIdentity"], json!("pod-a-1"));
    assert_eq!(spec["leaseDurationSeconds"], json!(1));
    assert_eq!(spec["leaseTransitions"], json!(0));
    assert_eq!(spec["acquireTime"], spec["renewTime"]);
    let typed: Lease = serde_json::from_value(created.clone())?;
    assert_eq!(serde_json::to_value(typed)?, created);

    let before = lease(&api)?;
    assert_eq!(a.try_acquire_or_renew().await?, Election::Leading);
    let (method, path, renewed) = last_write(&api)?;
    assert_eq!((method, path.as_str()), (Method::PUT, LEASE));
    // Optimistic concurrency: the PUT carries the version it read.
    assert_eq!(
        renewed["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(renewed["spec"]["holderIdentity"], json!("pod-a-1"));
    assert_eq!(renewed["spec"]["acquireTime"], spec["acquireTime"]);
    assert_eq!(renewed["spec"]["leaseTransitions"], json!(0));
    assert_ne!(renewed["spec"]["renewTime"], spec["renewTime"]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_standby_waits_while_the_holder_renews_and_takes_over_once_it_stops() -> Result<()> {
    let api = FakeApi::new();
    let mut a = elector(&api, "pod-a-1");
    let mut b = elector(&api, "pod-b-1");
    assert_eq!(a.try_acquire_or_renew().await?, Election::Leading);

    // While A renews, B keeps following, for longer than a lease duration.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            b.try_acquire_or_renew().await?,
            Election::Following(Some("pod-a-1".into()))
        );
        assert_eq!(a.try_acquire_or_renew().await?, Election::Leading);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A dies (stops renewing): B takes over after one lease duration by its own clock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.try_acquire_or_renew().await? != Election::Leading {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby never took the lease over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (method, path, body) = last_write(&api)?;
    assert_eq!((method, path.as_str()), (Method::PUT, LEASE));
    assert_eq!(body["spec"]["holderIdentity"], json!("pod-b-1"));
    assert_eq!(body["spec"]["leaseTransitions"], json!(1));
    assert_eq!(body["spec"]["acquireTime"], body["spec"]["renewTime"]);

    // A comes back: it follows, and its holding loop reports the loss at once.
    assert_eq!(
        a.try_acquire_or_renew().await?,
        Election::Following(Some("pod-b-1".into()))
    );
    let lost = a.hold(&CancellationToken::new()).await;
    assert!(lost, "the old holder steps down");
    Ok(())
}

#[tokio::test]
async fn a_takeover_that_loses_the_write_race_follows_instead_of_leading() -> Result<()> {
    let api = FakeApi::new();
    let mut a = elector(&api, "pod-a-1");
    let mut b = elector(&api, "pod-b-1");
    assert_eq!(a.try_acquire_or_renew().await?, Election::Leading);
    a.release().await?;
    // B sees a released lease and writes; another replica wrote first (409): B must not lead.
    api.conflict_next_put();
    assert_eq!(b.try_acquire_or_renew().await?, Election::Following(None));
    assert!(lease(&api)?["spec"]["holderIdentity"].is_null());
    // The next round, with a fresh read, succeeds.
    assert_eq!(b.try_acquire_or_renew().await?, Election::Leading);
    assert_eq!(lease(&api)?["spec"]["holderIdentity"], json!("pod-b-1"));
    Ok(())
}

#[tokio::test]
async fn a_clean_release_hands_over_at_once() -> Result<()> {
    let api = FakeApi::new();
    let mut a = elector(&api, "pod-a-1");
    let mut b = elector(&api, "pod-b-1");
    assert_eq!(a.try_acquire_or_renew().await?, Election::Leading);
    assert_eq!(
        b.try_acquire_or_renew().await?,
        Election::Following(Some("pod-a-1".into()))
    );
    a.release().await?;
    let (method, _, body) = last_write(&api)?;
    assert_eq!(method, Method::PUT);
    assert!(body["spec"]["holderIdentity"].is_null(), "{body}");
    assert_eq!(b.try_acquire_or_renew().await?, Election::Leading);
    // Releasing a lease someone else holds changes nothing.
    api.clear_log();
    a.release().await?;
    assert!(api.writes().is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_holder_steps_down_when_it_cannot_renew_and_acquire_waits_for_shutdown() -> Result<()> {
    let api = FakeApi::new();
    let mut a = elector(&api, "pod-a-1");
    let shutdown = CancellationToken::new();
    assert!(a.acquire(&shutdown).await);
    api.set_down(true);
    let lost = tokio::time::timeout(Duration::from_secs(10), a.hold(&shutdown)).await?;
    assert!(lost, "no renewal within the deadline means stepping down");
    let puts_or_gets = api.log().len();
    assert!(puts_or_gets >= 2, "it kept trying: {puts_or_gets}");

    // A standby that never gets the lease returns when told to shut down.
    api.set_down(false);
    let mut b = elector(&api, "pod-b-1");
    let stop = CancellationToken::new();
    let waiting = {
        let stop = stop.clone();
        tokio::spawn(async move { b.acquire(&stop).await })
    };
    stop.cancel();
    assert!(!waiting.await?, "a cancelled standby does not lead");
    Ok(())
}

fn leadership(api: &FakeApi, holder: &str) -> LeaseLeadership {
    let mut config = LeaseConfig::new(NS, "edge-1").with_duration(Duration::from_secs(1));
    config.holder = holder.to_owned();
    LeaseLeadership::new(api.client(NS), config)
}

// Paused time: renewals, the standby's polling and lease expiry run on the virtual clock.
#[tokio::test(start_paused = true)]
async fn through_the_leadership_interface_a_step_down_hands_over_and_an_outage_loses_the_term()
-> Result<()> {
    let api = FakeApi::new();
    let (a, b) = (leadership(&api, "pod-a-1"), leadership(&api, "pod-b-1"));
    let shutdown = CancellationToken::new();
    let term_a = a.acquire(&shutdown).await?.context("a leads")?;
    let standby = tokio::spawn(async move {
        let term = b.acquire(&CancellationToken::new()).await?;
        anyhow::Ok(term)
    });
    // For several lease durations the leader renews and the standby waits.
    tokio::select! {
        () = term_a.lost() => bail!("a renewed term was reported lost"),
        () = tokio::time::sleep(Duration::from_secs(5)) => {}
    }
    assert!(
        !standby.is_finished(),
        "the standby led while the lease was renewed"
    );
    assert_eq!(lease(&api)?["spec"]["holderIdentity"], json!("pod-a-1"));

    term_a.step_down().await;
    let term_b = standby
        .await??
        .context("the standby leads after the step-down")?;
    assert_eq!(lease(&api)?["spec"]["holderIdentity"], json!("pod-b-1"));

    // The API goes away: the leader cannot renew, and its term ends within the deadline.
    api.set_down(true);
    tokio::time::timeout(Duration::from_secs(5), term_b.lost())
        .await
        .context("the term was not lost although the lease could not be renewed")?;
    Ok(())
}
