//! Leadership for the `kubernetes` runtime: a `coordination.k8s.io/v1` Lease named after the
//! agent id, held by exactly one agent process (replica) at a time.
//!
//! - The holder renews the lease every `renew_every` (in a task its [`Term`] owns); its term is
//!   lost — the agent drops its connection and stands by again — when it has not managed to
//!   renew for `renew_deadline`, which is shorter than the lease duration, so it stops acting
//!   before anyone may take over, or when it finds another holder.
//! - A standby polls. It does not trust the holder's clock: it takes over only after the
//!   lease's record (holder, renew time, resource version) has not changed for one full lease
//!   duration *as measured by the standby's own monotonic clock*.
//! - Every write is an optimistic `PUT` carrying the `resourceVersion` that was read (or a
//!   `POST` for a missing lease), so two standbys racing for an expired lease cannot both win:
//!   the API server answers 409 Conflict to the slower one.
//! - A holder that shuts down cleanly clears the holder so a standby takes over at once.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Leadership, LeadershipError, Term};
use crate::runtime::kubernetes::objects::{LABEL_MANAGED_BY, MANAGED_BY};

/// Settings of the leader election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    /// The Lease object's name (see [`lease_name`]).
    pub name: String,
    /// This process's identity in `holderIdentity` (unique per process, see [`holder_identity`]).
    pub holder: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews, and how often a standby checks.
    pub renew_every: Duration,
    /// How long the holder keeps acting without a successful renewal (less than `duration`).
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    /// Defaults in the spirit of Kubernetes' own controllers: 15 s lease, renew every 2 s,
    /// give up after 10 s without renewing.
    pub fn new(namespace: impl Into<String>, agent_id: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: lease_name(agent_id),
            holder: holder_identity(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
        }
    }

    /// With a lease duration of `duration`, and renewal and step-down deadlines scaled to it as
    /// the defaults are (renew seven times per duration, give up after two thirds of it).
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self.renew_every = duration / 7;
        self.renew_deadline = duration * 2 / 3;
        self
    }
}

/// `streamspace-agent-<agent id>`, reduced to a DNS-1123 name: lowercase, other characters
/// replaced by `-`, and a hash suffix whenever anything was changed (so two agent ids never
/// share a lease).
pub fn lease_name(agent_id: &str) -> String {
    let clean: String = agent_id
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    let clean = clean.trim_matches('-');
    let mut name = format!("streamspace-agent-{}", clean);
    let shortened = name.len() > 200;
    name.truncate(200);
    if clean != agent_id || shortened {
        // FNV-1a: stable across builds and platforms, no extra dependency.
        let hash = agent_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        name = format!("{}-{:08x}", name.trim_end_matches('-'), hash as u32);
    }
    name
}

/// `<pod or host name>-<random>`: the pod name tells operators which replica leads; the
/// random part keeps a restarted process from mistaking its predecessor's lease for its own.
pub fn holder_identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "agent".to_owned());
    format!("{host}-{:08x}", rand::random::<u32>())
}

/// What one round of the election found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Election {
    /// This process holds the lease (acquired, renewed or taken over just now).
    Leading,
    /// Another process holds it (`None` if it could not be told who: a lost race).
    Following(Option<String>),
}

/// The lease as last seen from a standby, and when (by the local clock) it last changed.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    record: (Option<String>, Option<MicroTime>, Option<String>),
    since: Instant,
}

/// Runs the election for one process.
pub struct LeaseElector {
    api: Api<Lease>,
    config: LeaseConfig,
    seen: Option<Seen>,
}

impl LeaseElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            seen: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let taking_over = previous
            .and_then(|s| s.holder_identity.as_deref())
            .is_none_or(|h| h != self.config.holder);
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.holder.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: if taking_over {
                Some(MicroTime(now))
            } else {
                previous.and_then(|s| s.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(match previous {
                Some(_) if taking_over => transitions.saturating_add(1),
                _ => transitions,
            }),
            ..Default::default()
        }
    }

    /// One round: create the lease if missing, renew it if held, take it over if it expired.
    pub async fn try_acquire_or_renew(&mut self) -> Result<Election, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    labels: Some([(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned())].into()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Election::Leading),
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {
                    Ok(Election::Following(None))
                }
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() != Some(self.config.holder.as_str()) && !self.expired(&lease, &spec) {
            return Ok(Election::Following(holder));
        }
        let mut updated = lease;
        updated.spec = Some(self.spec(Some(&spec), now));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {
                self.seen = None;
                Ok(Election::Leading)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(Election::Following(None)),
            Err(e) => Err(e),
        }
    }

    /// Whether another holder's lease has gone unrenewed for a whole lease duration, as
    /// measured here. An empty holder (a clean release) is expired at once.
    fn expired(&mut self, lease: &Lease, spec: &LeaseSpec) -> bool {
        if spec.holder_identity.as_deref().unwrap_or("").is_empty() {
            return true;
        }
        let record = (
            spec.holder_identity.clone(),
            spec.renew_time.clone(),
            lease.metadata.resource_version.clone(),
        );
        let seen = match self.seen.take() {
            Some(seen) if seen.record == record => seen,
            _ => Seen {
                record,
                since: Instant::now(),
            },
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.duration, Duration::from_secs);
        let expired = seen.since.elapsed() >= duration;
        self.seen = Some(seen);
        expired
    }

    /// Waits until this process leads. `false` if `shutdown` came first.
    pub async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        let mut logged_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Election::Leading) => {
                    tracing::info!(lease = %self.config.name, holder = %self.config.holder, "leading: this agent replica is active");
                    return true;
                }
                Ok(Election::Following(holder)) => {
                    if holder.is_some() && holder != logged_holder {
                        tracing::info!(lease = %self.config.name, holder = ?holder, "standing by: another agent replica is active");
                        logged_holder = holder;
                    }
                }
                Err(e) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "lease check failed");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.config.renew_every) => {}
            }
        }
    }

    /// Renews until leadership is lost (another holder, or no renewal for `renew_deadline`),
    /// then returns `true`; returns `false` when `shutdown` is cancelled first.
    pub async fn hold(&mut self, shutdown: &CancellationToken) -> bool {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(self.config.renew_every) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(Election::Leading) => renewed = Instant::now(),
                Ok(Election::Following(holder)) => {
                    tracing::error!(lease = %self.config.name, holder = ?holder, "lost the lease to another agent replica");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "lease renewal failed")
                }
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                tracing::error!(lease = %self.config.name, "could not renew the lease in time; stepping down");
                return true;
            }
        }
    }

    /// Gives the lease up (clean shutdown) so a standby takes over without waiting for it to
    /// expire. Does nothing if another process holds it by now.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.holder.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(drop)
    }
}

/// Leadership by holding the agent's Lease; see the module documentation.
#[derive(Clone)]
pub struct LeaseLeadership {
    client: Client,
    config: LeaseConfig,
}

impl std::fmt::Debug for LeaseLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLeadership")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LeaseLeadership {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self { client, config }
    }
}

#[async_trait]
impl Leadership for LeaseLeadership {
    async fn acquire(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Box<dyn Term>>, LeadershipError> {
        let mut elector = LeaseElector::new(self.client.clone(), self.config.clone());
        tracing::info!(lease = %self.config.name, holder = %self.config.holder, "waiting for the agent lease");
        if !elector.acquire(shutdown).await {
            return Ok(None);
        }
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let keeper = tokio::spawn({
            let (lost, stop) = (lost.clone(), stop.clone());
            async move {
                if elector.hold(&stop).await {
                    lost.cancel();
                }
                elector
            }
        });
        Ok(Some(Box::new(LeaseTerm {
            lost,
            stop,
            keeper: Some(keeper),
        })))
    }
}

/// A held Lease, renewed by the `keeper` task until the term is lost or given up.
struct LeaseTerm {
    lost: CancellationToken,
    stop: CancellationToken,
    keeper: Option<JoinHandle<LeaseElector>>,
}

#[async_trait]
impl Term for LeaseTerm {
    async fn lost(&self) {
        self.lost.cancelled().await
    }

    async fn step_down(mut self: Box<Self>) {
        self.stop.cancel();
        let Some(keeper) = self.keeper.take() else {
            return;
        };
        match keeper.await {
            Ok(mut elector) => {
                if let Err(e) = elector.release().await {
                    tracing::warn!(lease = %elector.config.name, error = %e, "could not release the agent lease");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the lease renewal task failed"),
        }
    }
}

impl Drop for LeaseTerm {
    /// A term dropped without stepping down stops renewing, as a dead process would.
    fn drop(&mut self) {
        if let Some(keeper) = &self.keeper {
            keeper.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_dns_names_and_distinct() {
        assert_eq!(lease_name("agent-1"), "streamspace-agent-agent-1");
        let odd = lease_name("Agent_1");
        assert!(odd.starts_with("streamspace-agent-agent-1-"), "{odd}");
        assert_ne!(lease_name("Agent_1"), lease_name("Agent.1"));
        assert!(
            lease_name(&"x".repeat(300)).len() <= 253,
            "names stay within the DNS-1123 subdomain limit"
        );
    }
}
