//! Calls between replicas: they carry `x-streamspace-replica-auth`, an HMAC of the purpose and
//! the stream token under the server secret all replicas share, so only a replica can make them.

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use streamspace_proto::wire::TunnelOpen;

use crate::keys::KeyHasher;

/// Header carrying the inter-replica HMAC.
pub(crate) const AUTH_HEADER: &str = "x-streamspace-replica-auth";

/// The HMAC proving a request comes from a replica.
pub(crate) fn proof(hasher: &KeyHasher, purpose: &str, token: &str) -> String {
    hasher.hash(&format!("streamspace replica\n{purpose}\n{token}"))
}

/// Whether `headers` carry the proof for `purpose` and `token`.
pub(crate) fn verify(hasher: &KeyHasher, headers: &HeaderMap, purpose: &str, token: &str) -> bool {
    let expected = proof(hasher, purpose, token);
    headers
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| {
            use subtle::ConstantTimeEq;
            bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        })
}

/// Body of `POST /internal/v1/tunnels/open`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteOpen {
    pub agent_id: String,
    pub open: TunnelOpen,
}
