//! Opening a viewer stream through another replica (see `crate::tunnel`): the viewer's replica
//! records `streamspace:tunnel:{token}` = itself in Redis, expiring with the open timeout, and
//! asks the agent's owner (from the owner record) to send `tunnel_open`, with
//! `POST /internal/v1/tunnels/open` on the owner's internal address (https when the owner
//! serves TLS, as its record says). A data connection that lands
//! on a replica not holding its token finds the viewer's replica by the same record.

use std::time::Duration;

use serde::Serialize;
use streamspace_proto::wire::{TransferOpen, TunnelOpen};

use super::link::RedisLink;
use super::{replicas, routing};
use crate::cluster::{AUTH_HEADER, Peer, RemoteOpen, RemoteTransfer, proof};
use crate::keyring::{Keyring, ReplicaProofs};

/// What calling another replica needs.
pub(crate) struct Caller<'a> {
    /// Verifies replicas that serve TLS (see `crate::tls::peer_config`).
    pub http: &'a reqwest::Client,
    /// Signs the call.
    pub replica_proofs: &'a Keyring<ReplicaProofs>,
    /// How long the call may take.
    pub open_timeout: Duration,
}

fn token_key(token: &str) -> String {
    format!("streamspace:tunnel:{token}")
}

/// Asks the replica owning `agent_id` to send `open` to it, after recording in Redis that the
/// tunnel's viewer is here. Errors say why the stream cannot be opened.
pub(crate) async fn open_elsewhere(
    link: &RedisLink,
    caller: &Caller<'_>,
    agent_id: &str,
    open: TunnelOpen,
) -> Result<(), String> {
    let token = open.token.clone();
    let body = RemoteOpen {
        agent_id: agent_id.to_owned(),
        open,
    };
    ask_owner(
        link,
        caller,
        agent_id,
        &token,
        "/internal/v1/tunnels/open",
        &body,
    )
    .await
}

/// [`open_elsewhere`] for a file transfer: `POST /internal/v1/transfers/open` on the owner.
pub(crate) async fn open_transfer_elsewhere(
    link: &RedisLink,
    caller: &Caller<'_>,
    agent_id: &str,
    open: TransferOpen,
) -> Result<(), String> {
    let token = open.token.clone();
    let body = RemoteTransfer {
        agent_id: agent_id.to_owned(),
        open,
    };
    ask_owner(
        link,
        caller,
        agent_id,
        &token,
        "/internal/v1/transfers/open",
        &body,
    )
    .await
}

async fn ask_owner(
    link: &RedisLink,
    caller: &Caller<'_>,
    agent_id: &str,
    token: &str,
    path: &str,
    body: &impl Serialize,
) -> Result<(), String> {
    let open_timeout = caller.open_timeout;
    let owner = routing::owner(link, agent_id)
        .await
        .map_err(|e| format!("Redis is unreachable: {e}"))?
        .map(|(_, replica)| replica)
        .ok_or_else(|| format!("agent {agent_id} is not connected to any replica"))?;
    let peer = replicas::address_of(link, &owner)
        .await
        .map_err(|e| format!("Redis is unreachable: {e}"))?
        .ok_or_else(|| format!("replica {owner} holding agent {agent_id} is gone"))?;
    let ttl_ms = u64::try_from(open_timeout.as_millis()).unwrap_or(u64::MAX);
    let (key, me) = (token_key(token), link.replica.id.clone());
    link.with_conn(|mut conn| async move {
        redis::cmd("SET")
            .arg(key)
            .arg(me)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async::<()>(&mut conn)
            .await
    })
    .await
    .map_err(|e| format!("Redis is unreachable: {e}"))?;
    let auth = proof(caller.replica_proofs, "open", token);
    crate::metrics::replica_hop("open", peer.scheme());
    let answer = caller
        .http
        .post(peer.http_url(path))
        .header(AUTH_HEADER, auth)
        .timeout(open_timeout)
        .json(body)
        .send()
        .await
        .map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            format!("replica {owner} is unreachable: {text}")
        })?;
    if answer.status().is_success() {
        return Ok(());
    }
    let status = answer.status();
    match answer.json::<streamspace_proto::api::ErrorBody>().await {
        Ok(body) => Err(body.error.message),
        Err(_) => Err(format!("replica {owner} answered {status}")),
    }
}

/// The address of the replica holding the viewer of stream `token`, if another one.
pub(crate) async fn viewer_replica(link: &RedisLink, token: &str) -> Option<Peer> {
    let key = token_key(token);
    let replica: Option<String> = link
        .with_conn(
            |mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await },
        )
        .await
        .ok()
        .flatten();
    let replica = replica.filter(|r| *r != link.replica.id)?;
    replicas::address_of(link, &replica).await.ok().flatten()
}
