//! Calls between replicas: they carry `x-streamspace-replica-auth`, an HMAC of the purpose and
//! the stream token under the replica-proof key all replicas derive from the master secret
//! (`crate::keyring`), so only a replica can make them.

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

/// Body of `POST /internal/v1/tunnels/open`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteOpen {
    pub agent_id: String,
    pub open: TunnelOpen,
}
