//! The viewers other replicas carry: listing a session's watchers and disconnecting one ask
//! every other live replica (from the replica records) directly, over HTTP(S) with the
//! cluster's proof — `GET /internal/v1/sessions/{id}/viewers` and
//! `POST /internal/v1/viewers/close` — since a watcher's stream sits on whichever replica the
//! load balancer gave the watcher's browser.

use futures_util::future::join_all;
use streamspace_proto::api::Viewer;
use uuid::Uuid;

use super::link::RedisLink;
use super::replicas;
use super::tunnels::Caller;
use crate::cluster::{AUTH_HEADER, CLOSE_VIEWER_PROOF, CloseViewer, Peer, VIEWERS_PROOF, proof};

/// Every live replica but this one, with where it is reached.
async fn others(link: &RedisLink) -> Vec<(String, Peer)> {
    let listed = match replicas::list_from_redis(link).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the other replicas: their viewers are left out");
            return Vec::new();
        }
    };
    let mut peers = Vec::new();
    for replica in listed {
        if replica.id == link.replica.id {
            continue;
        }
        match replicas::address_of(link, &replica.id).await {
            Ok(Some(peer)) => peers.push((replica.id, peer)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(replica = %replica.id, error = %e, "cannot find a replica's address")
            }
        }
    }
    peers
}

/// The viewers of `session_id` the other replicas carry.
pub(crate) async fn list_elsewhere(
    link: &RedisLink,
    caller: &Caller<'_>,
    session_id: Uuid,
) -> Vec<Viewer> {
    let auth = proof(
        caller.replica_proofs,
        VIEWERS_PROOF,
        &session_id.to_string(),
    );
    let asks = others(link).await.into_iter().map(|(id, peer)| {
        let auth = auth.clone();
        async move {
            crate::metrics::replica_hop("viewers", peer.scheme());
            let answer = caller
                .http
                .get(peer.http_url(&format!("/internal/v1/sessions/{session_id}/viewers")))
                .header(AUTH_HEADER, auth)
                .timeout(caller.open_timeout)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            let listed = match answer {
                Ok(answer) => answer.json::<Vec<Viewer>>().await,
                Err(e) => Err(e),
            };
            listed.unwrap_or_else(|e| {
                tracing::warn!(replica = %id, %session_id, error = %e, "cannot list a replica's viewers");
                Vec::new()
            })
        }
    });
    join_all(asks).await.into_iter().flatten().collect()
}

/// Asks every other replica to close viewer `viewer_id` of `session_id`; whether one did.
pub(crate) async fn close_elsewhere(
    link: &RedisLink,
    caller: &Caller<'_>,
    session_id: Uuid,
    viewer_id: Uuid,
    reason: &str,
) -> bool {
    let auth = proof(
        caller.replica_proofs,
        CLOSE_VIEWER_PROOF,
        &viewer_id.to_string(),
    );
    let body = CloseViewer {
        session_id,
        viewer_id,
        reason: reason.to_owned(),
    };
    let asks = others(link).await.into_iter().map(|(id, peer)| {
        let (auth, body) = (auth.clone(), &body);
        async move {
            crate::metrics::replica_hop("close_viewer", peer.scheme());
            let answer = caller
                .http
                .post(peer.http_url("/internal/v1/viewers/close"))
                .header(AUTH_HEADER, auth)
                .timeout(caller.open_timeout)
                .json(body)
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => true,
                Ok(answer) if answer.status() == reqwest::StatusCode::NOT_FOUND => false,
                Ok(answer) => {
                    tracing::warn!(replica = %id, status = %answer.status(), "a replica refused to close a viewer");
                    false
                }
                Err(e) => {
                    tracing::warn!(replica = %id, error = %e, "cannot ask a replica to close a viewer");
                    false
                }
            }
        }
    });
    join_all(asks).await.into_iter().any(|closed| closed)
}
