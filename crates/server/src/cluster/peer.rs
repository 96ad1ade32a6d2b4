//! Calls between replicas: they carry `x-streamspace-replica-auth`, an HMAC of the purpose and
//! the stream token (or the id the call is about) under the replica-proof key all replicas
//! derive from the master secret (`crate::keyring`), so only a replica can make them.

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use streamspace_proto::wire::TunnelOpen;

use crate::keyring::{Keyring, ReplicaProofs};

/// Header carrying the inter-replica HMAC.
pub(crate) const AUTH_HEADER: &str = "x-streamspace-replica-auth";

/// The HMAC proving a request comes from a replica.
pub(crate) fn proof(key: &Keyring<ReplicaProofs>, purpose: &str, token: &str) -> String {
    key.mac(&proof_text(purpose, token))
}

fn proof_text(purpose: &str, token: &str) -> String {
    format!("streamspace replica\n{purpose}\n{token}")
}

/// Whether `headers` carry the proof for `purpose` and `token`.
pub(crate) fn verify(
    key: &Keyring<ReplicaProofs>,
    headers: &HeaderMap,
    purpose: &str,
    token: &str,
) -> bool {
    headers
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| key.verify(&proof_text(purpose, token), given))
}

/// Another replica as this one calls it: its internal address and whether it serves TLS there
/// (then every call to it is https/wss, verified against the configured CA and name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    pub address: String,
    pub tls: bool,
}

impl Peer {
    /// `https`/`http`, also the `scheme` label of `streamspace_replica_hops_total`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The URL of `path_and_query` on this replica.
    pub fn http_url(&self, path_and_query: &str) -> String {
        format!("{}://{}{path_and_query}", self.scheme(), self.address)
    }

    /// The WebSocket URL of `path_and_query` on this replica.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{path_and_query}", self.address)
    }
}

/// Body of `POST /internal/v1/transfers/open`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteTransfer {
    pub agent_id: String,
    pub open: streamspace_proto::wire::TransferOpen,
}

/// Purpose of the proof on `GET /internal/v1/sessions/{id}/viewers` (over the session id).
pub(crate) const VIEWERS_PROOF: &str = "viewers";
/// Purpose of the proof on `POST /internal/v1/viewers/close` (over the viewer id).
pub(crate) const CLOSE_VIEWER_PROOF: &str = "close-viewer";

/// Body of `POST /internal/v1/viewers/close`: close this viewer stream if it is held here.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CloseViewer {
    pub session_id: uuid::Uuid,
    pub viewer_id: uuid::Uuid,
    /// The close reason the viewer is given (with code 1008).
    pub reason: String,
}

/// Body of `POST /internal/v1/tunnels/open`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteOpen {
    pub agent_id: String,
    pub open: TunnelOpen,
}
