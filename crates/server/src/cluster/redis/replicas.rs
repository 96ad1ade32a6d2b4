//! Replica records in Redis: each replica keeps `streamspace:replica:{id}` (its
//! [`ReplicaStatus`] as JSON, with a TTL of three heartbeat intervals, rewritten every interval)
//! and its id in the set `streamspace:replicas`. Listing reads the set and drops ids whose
//! record expired, so a replica that died leaves the list within three intervals.
//!
//! The record also says whether the replica serves TLS at its address (`"tls": true`), so
//! calls to it are https/wss. The field is an addition: a replica of an earlier release reads
//! the record as before (ignoring it), and a record without it means plain HTTP.

use serde::{Deserialize, Serialize};

use super::link::RedisLink;
use crate::cluster::{Peer, ReplicaStatus};

/// A replica's record in Redis: what the replica list shows, and how to call it.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    status: ReplicaStatus,
    #[serde(default)]
    tls: bool,
}

const REPLICA_SET: &str = "streamspace:replicas";

fn replica_key(id: &str) -> String {
    format!("streamspace:replica:{id}")
}

/// Writes this replica's record (called every heartbeat interval while Redis is up).
pub(crate) async fn announce(link: &RedisLink, agents: usize) -> redis::RedisResult<()> {
    let record = Record {
        status: link.replica.status(agents),
        tls: link.replica.tls,
    };
    let Ok(json) = serde_json::to_string(&record) else {
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

/// Where and how replica `id` is reached, from its record (`None` if it has none: gone or
/// expired).
pub(crate) async fn address_of(link: &RedisLink, id: &str) -> redis::RedisResult<Option<Peer>> {
    let key = replica_key(id);
    let record: Option<String> = link
        .with_conn(
            |mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await },
        )
        .await?;
    Ok(record
        .and_then(|r| serde_json::from_str::<Record>(&r).ok())
        .map(|r| Peer {
            address: r.status.address,
            tls: r.tls,
        }))
}

pub(crate) async fn list_from_redis(link: &RedisLink) -> redis::RedisResult<Vec<ReplicaStatus>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_without_the_tls_field_are_plain_and_old_readers_ignore_it() {
        let old = r#"{"id":"a","address":"10.0.0.1:8080","started_at":"2026-01-01T00:00:00Z",
            "agents":1,"last_seen_at":"2026-01-01T00:00:00Z"}"#;
        let record: Record = serde_json::from_str(old).expect("an earlier release's record");
        assert!(!record.tls, "no field: plain HTTP");
        let new = serde_json::to_string(&Record {
            tls: true,
            ..record
        })
        .expect("serializes");
        assert!(new.contains(r#""tls":true"#), "{new}");
        let status: ReplicaStatus = serde_json::from_str(&new).expect("read as before");
        assert_eq!(status.address, "10.0.0.1:8080");
    }
}
