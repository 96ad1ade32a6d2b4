//! Replica identity, and what `GET /api/v1/replicas` shows of each replica. Without Redis the
//! list is this replica alone; with Redis it comes from the replicas' records (see
//! `redis::replicas`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who this replica is.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaInfo {
    pub id: String,
    /// Where other replicas reach this one (`host:port`).
    pub address: String,
    /// Whether it serves TLS there (other replicas then call it over https/wss).
    pub tls: bool,
    pub started_at: DateTime<Utc>,
}

/// One replica as `GET /api/v1/replicas` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaStatus {
    pub id: String,
    pub address: String,
    pub started_at: DateTime<Utc>,
    /// Agents connected to it.
    pub agents: usize,
    pub last_seen_at: DateTime<Utc>,
}

impl ReplicaInfo {
    pub(crate) fn status(&self, agents: usize) -> ReplicaStatus {
        ReplicaStatus {
            id: self.id.clone(),
            address: self.address.clone(),
            started_at: self.started_at,
            agents,
            last_seen_at: Utc::now(),
        }
    }
}

/// The replica list lives in Redis, which cannot be reached.
#[derive(Debug, thiserror::Error)]
#[error("the replica list lives in Redis, which is unreachable: {0}")]
pub(crate) struct ReplicasUnavailable(pub String);
