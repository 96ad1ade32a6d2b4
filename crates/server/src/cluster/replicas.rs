//! Replica identity and liveness, and `GET /api/v1/replicas`.
//!
//! In Redis mode each replica keeps `streamspace:replica:{id}` (its [`ReplicaStatus`] as JSON,
//! with a TTL of three heartbeat intervals, rewritten every interval) and its id in the set
//! `streamspace:replicas`. Listing reads the set and drops ids whose record expired, so a
//! replica that died leaves the list within three intervals. Without Redis the list is this
//! replica alone.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cluster::redis::link::RedisLink;
use crate::error::ApiError;
use crate::state::AppState;

const REPLICA_SET: &str = "streamspace:replicas";

fn replica_key(id: &str) -> String {
    format!("streamspace:replica:{id}")
}

/// Who this replica is.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaInfo {
    pub id: String,
    /// Where other replicas reach this one (`host:port`).
    pub address: String,
    pub started_at: DateTime<Utc>,
}

/// One replica as `GET /api/v1/replicas` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub address: String,
    pub started_at: DateTime<Utc>,
    /// Agents connected to it.
    pub agents: usize,
    pub last_seen_at: DateTime<Utc>,
}

impl ReplicaInfo {
    fn status(&self, agents: usize) -> ReplicaStatus {
        ReplicaStatus {
            id: self.id.clone(),
            address: self.address.clone(),
            started_at: self.started_at,
            agents,
            last_seen_at: Utc::now(),
        }
    }
}

/// Writes this replica's record (called every heartbeat interval while Redis is up).
pub(crate) async fn announce(link: &RedisLink, agents: usize) -> redis::RedisResult<()> {
    let Ok(json) = serde_json::to_string(&link.replica.status(agents)) else {
        return Ok(());
    };
    let key = replica_key(&link.replica.id);
    let id = link.replica.id.clone();
    let ttl = u64::try_from(link.liveness.as_millis()).unwrap_or(u64::MAX);
    link.with_conn(|mut conn| async move {
        redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg(json)
            .arg("PX")
            .arg(ttl)
            .ignore()
            .cmd("SADD")
            .arg(REPLICA_SET)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    })
    .await
}

/// Removes this replica's record (graceful shutdown).
pub(crate) async fn withdraw(link: &RedisLink) {
    let key = replica_key(&link.replica.id);
    let id = link.replica.id.clone();
    let result = link
        .with_conn(|mut conn| async move {
            redis::pipe()
                .cmd("DEL")
                .arg(key)
                .ignore()
                .cmd("SREM")
                .arg(REPLICA_SET)
                .arg(id)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "removing the replica record failed; it expires");
    }
}

/// Where replica `id` is reached, from its record (`None` if it has none: gone or expired).
pub(crate) async fn address_of(link: &RedisLink, id: &str) -> redis::RedisResult<Option<String>> {
    let key = replica_key(id);
    let record: Option<String> = link
        .with_conn(
            |mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await },
        )
        .await?;
    Ok(record
        .and_then(|r| serde_json::from_str::<ReplicaStatus>(&r).ok())
        .map(|s| s.address))
}

async fn list_from_redis(link: &RedisLink) -> redis::RedisResult<Vec<ReplicaStatus>> {
    let ids: Vec<String> = link
        .with_conn(|mut conn| async move {
            redis::cmd("SMEMBERS")
                .arg(REPLICA_SET)
                .query_async(&mut conn)
                .await
        })
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| replica_key(id)).collect();
    let records: Vec<Option<String>> = link
        .with_conn(
            |mut conn| async move { redis::cmd("MGET").arg(keys).query_async(&mut conn).await },
        )
        .await?;
    let mut out = Vec::new();
    let mut gone = Vec::new();
    for (id, record) in ids.into_iter().zip(records) {
        match record.and_then(|r| serde_json::from_str::<ReplicaStatus>(&r).ok()) {
            Some(status) => out.push(status),
            None => gone.push(id),
        }
    }
    if !gone.is_empty() {
        let _ = link
            .with_conn(|mut conn| async move {
                redis::cmd("SREM")
                    .arg(REPLICA_SET)
                    .arg(gone)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// `GET /api/v1/replicas`: the live replicas (503 `redis_unavailable` while Redis is down).
pub(crate) async fn list(
    State(app): State<AppState>,
) -> Result<Json<Vec<ReplicaStatus>>, ApiError> {
    let held = app.hub.agents().await.len();
    let Some(link) = &app.redis else {
        return Ok(Json(vec![app.replica.status(held)]));
    };
    let mut replicas = list_from_redis(link).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "redis_unavailable",
            format!("the replica list lives in Redis, which is unreachable: {e}"),
        )
    })?;
    // This replica's own entry is always current.
    replicas.retain(|r| r.id != app.replica.id);
    replicas.push(app.replica.status(held));
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(replicas))
}
