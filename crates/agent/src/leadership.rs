//! Which of several agent processes sharing one agent id is the active one.
//!
//! High availability runs two or more processes with the same agent id; exactly one of them may
//! recover sessions, connect to the control plane and take commands. That process is the
//! *leader*. The agent's main loop ([`crate::run`]) only knows this module's two traits:
//!
//! 1. [`Leadership::acquire`] waits as a standby until this process leads, and returns a
//!    [`Term`];
//! 2. the agent runs for as long as the term lasts — [`Term::lost`] completes if leadership is
//!    lost (another process took over, or it could not be kept), and the agent stops acting and
//!    stands by again;
//! 3. on shutdown the agent calls [`Term::step_down`], so a standby takes over at once.
//!
//! Two implementations, picked by the runtime the agent runs:
//! - [`flock`] for the `process` and `docker` runtimes: an exclusive lock on a shared file. The
//!   kernel drops it when the holder dies, and nothing else can take it away, so its terms are
//!   never lost.
//! - [`lease`] for the `kubernetes` runtime: a `coordination.k8s.io/v1` Lease that the leader
//!   renews; a term is lost when it cannot renew in time or another replica holds the lease.

pub mod flock;
pub mod lease;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use flock::{FlockLeadership, HaConfig};
pub use lease::{LeaseConfig, LeaseLeadership};

/// Why leadership could not be decided at all (not: "another process leads").
#[derive(Debug, thiserror::Error)]
pub enum LeadershipError {
    #[error(transparent)]
    Lock(#[from] flock::LockError),
}

/// A way of electing one active process among several with the same agent id.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// Waits until this process leads. `Ok(None)` when `shutdown` is cancelled first.
    async fn acquire(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Box<dyn Term>>, LeadershipError>;
}

/// One period of leadership, from [`Leadership::acquire`] until it is lost or given up.
/// Dropping it without [`Term::step_down`] stops keeping it (as if the process had died): a
/// standby takes over once the implementation lets it.
#[async_trait]
pub trait Term: Send {
    /// Completes when this process no longer leads and must stop acting. Cancel-safe.
    async fn lost(&self);

    /// Gives leadership up so that a standby takes over without waiting.
    async fn step_down(self: Box<Self>);
}
