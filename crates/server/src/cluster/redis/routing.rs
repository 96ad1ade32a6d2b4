//! Cross-replica routing through Redis: agent ownership records and wake-ups.
//!
//! - `streamspace:agent:{id}:owner` = `"{epoch}:{replica}"`, with a TTL of three heartbeat
//!   intervals, refreshed every interval by the holding replica. The epoch is the database's
//!   `agents.epoch`, bumped by every registration, so Redis and PostgreSQL agree on which
//!   connection is newest. [`CLAIM`] never lets an older epoch overwrite a newer owner, and
//!   [`RELEASE`] deletes a record only if it is still exactly ours (compare-and-delete).
//! - `streamspace:replica:{id}:wake` is each replica's channel. A wake-up names the agent and
//!   the epoch the sender saw; it carries no command — the owner reads commands from the
//!   database. A replica woken for an agent it does not hold (or holds at an older epoch) hands
//!   the wake-up back to routing once; after that the sweep finds the work.

use redis::Script;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

use super::link::RedisLink;
use super::replicas;
use crate::metrics;

/// Sets the owner record unless a newer epoch holds it. KEYS[1] owner key; ARGV: epoch,
/// replica, ttl ms. Returns 1 if the record is ours now.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local e = tonumber(string.match(cur, '^(%d+):'))
  if e and e > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

/// Deletes the owner record only if it is exactly `ARGV[1]`.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});

pub(crate) fn owner_key(agent_id: &str) -> String {
    format!("streamspace:agent:{agent_id}:owner")
}

pub(crate) fn channel(replica_id: &str) -> String {
    format!("streamspace:replica:{replica_id}:wake")
}

/// A wake-up: "agent X, as of epoch E, has work in the database".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Wake {
    pub agent_id: String,
    pub epoch: i64,
    /// How often this wake-up was handed back already.
    #[serde(default)]
    pub hops: u8,
}

/// The owner record's `(epoch, replica)`.
fn parse_owner(value: &str) -> Option<(i64, String)> {
    let (epoch, replica) = value.split_once(':')?;
    Some((epoch.parse().ok()?, replica.to_owned()))
}

/// Records this replica as the owner of `agent_id` at `epoch`; false if a newer epoch owns it.
pub(crate) async fn claim(
    link: &RedisLink,
    agent_id: &str,
    epoch: i64,
) -> redis::RedisResult<bool> {
    let key = owner_key(agent_id);
    let replica = link.replica.id.clone();
    let ttl = u64::try_from(link.liveness.as_millis()).unwrap_or(u64::MAX);
    link.with_conn(|mut conn| async move {
        let won: i64 = CLAIM
            .key(key)
            .arg(epoch)
            .arg(replica)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await?;
        Ok(won == 1)
    })
    .await
}

/// Removes the owner record of `agent_id` if it is still ours at `epoch`.
pub(crate) async fn release(link: &RedisLink, agent_id: &str, epoch: i64) {
    let key = owner_key(agent_id);
    let value = format!("{epoch}:{}", link.replica.id);
    let result = link
        .with_conn(|mut conn| async move {
            let _: i64 = RELEASE.key(key).arg(value).invoke_async(&mut conn).await?;
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::debug!(%agent_id, error = %e, "releasing agent ownership failed; it expires");
    }
}

/// Owner records claimed per pipelined round trip when re-publishing.
const CLAIM_BATCH: usize = 500;

/// Re-publishes every agent held here (pipelined, [`CLAIM_BATCH`] per round trip) and this
/// replica's own record.
pub(crate) async fn publish_all(link: &RedisLink) -> redis::RedisResult<()> {
    let held = link.local.held();
    let replica = link.replica.id.clone();
    let ttl = u64::try_from(link.liveness.as_millis()).unwrap_or(u64::MAX);
    for chunk in held.chunks(CLAIM_BATCH) {
        let replica = replica.clone();
        let won: Vec<i64> = link
            .with_conn(|mut conn| async move {
                // Loaded each time: a restarted Redis has an empty script cache.
                let sha = CLAIM.load_async(&mut conn).await?;
                let mut pipe = redis::pipe();
                for (agent_id, epoch) in chunk {
                    pipe.cmd("EVALSHA")
                        .arg(&sha)
                        .arg(1)
                        .arg(owner_key(agent_id))
                        .arg(*epoch)
                        .arg(&replica)
                        .arg(ttl);
                }
                pipe.query_async(&mut conn).await
            })
            .await?;
        for ((agent_id, epoch), won) in chunk.iter().zip(won) {
            if won != 1 {
                tracing::debug!(%agent_id, epoch, "a newer connection of this agent owns it elsewhere");
            }
        }
    }
    replicas::announce(link, held.len()).await
}

/// Looks up who owns `agent_id`.
pub(crate) async fn owner(
    link: &RedisLink,
    agent_id: &str,
) -> redis::RedisResult<Option<(i64, String)>> {
    let key = owner_key(agent_id);
    let value: Option<String> = link
        .with_conn(
            |mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await },
        )
        .await?;
    Ok(value.as_deref().and_then(parse_owner))
}

/// Wakes the replica owning `agent_id`, handed back `hops` times already. Whatever fails is
/// left to the owner's sweep.
pub(crate) async fn forward(link: &RedisLink, agent_id: &str, hops: u8) {
    let found = match owner(link, agent_id).await {
        Ok(found) => found,
        Err(e) => {
            metrics::routing_failure("redis");
            tracing::debug!(%agent_id, error = %e, "routing lookup failed; the owner's sweep delivers");
            return;
        }
    };
    let Some((epoch, replica)) = found else {
        // Not connected anywhere: the command waits in the database for the agent.
        return;
    };
    if replica == link.replica.id {
        // A record of ours for a connection we no longer hold; it expires.
        return;
    }
    let wake = Wake {
        agent_id: agent_id.to_owned(),
        epoch,
        hops,
    };
    let Ok(payload) = serde_json::to_string(&wake) else {
        return;
    };
    let target = channel(&replica);
    let sent = link
        .with_conn(|mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(target)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await;
    match sent {
        Ok(n) if n > 0 => metrics::delivery("routed"),
        Ok(_) => {
            metrics::routing_failure("no_subscriber");
            tracing::debug!(%agent_id, %replica, "owner not subscribed; its sweep or the agent's reconnect delivers");
        }
        Err(e) => {
            metrics::routing_failure("redis");
            tracing::debug!(%agent_id, error = %e, "publishing a wake-up failed");
        }
    }
}

/// A wake-up arrived on our channel.
pub(crate) async fn on_wake(link: &RedisLink, wake: Wake) {
    match link.local.epoch_of(&wake.agent_id) {
        Some(held) if held >= wake.epoch => {
            let _ = link.events.wakes.send(wake.agent_id).await;
        }
        _ if wake.hops == 0 => {
            tracing::debug!(agent_id = %wake.agent_id, epoch = wake.epoch,
                "woken for an agent not held here at that epoch; handing back to routing");
            forward(link, &wake.agent_id, 1).await;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_records_parse() {
        assert_eq!(parse_owner("7:replica-a"), Some((7, "replica-a".into())));
        assert_eq!(parse_owner("7:a:b"), Some((7, "a:b".into())));
        assert_eq!(parse_owner("x:a"), None);
        assert_eq!(parse_owner("nothing"), None);
    }
}
