//! Credentials: the bootstrap admin token, agent keys, personal API tokens and browser sessions.
//!
//! A key is 256 random bits, shown to its owner once (`ssa_…` for the admin token, `ssk_…` for
//! agent keys, `ssp_…` for personal tokens, `ssb_…` for browser sessions; base64url). The
//! database keeps only HMAC-SHA256(server secret, key) in hex, so a leaked table does not leak
//! keys, and checking a key is one hash plus one indexed lookup — no slow password hash per
//! request. The server secret is created on first start
//! (`setting_get_or_init`), shared by all replicas, and held in memory by [`KeyHasher`].
//! Resolved users are cached by `auth`, not here.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use streamspace_proto::api::CreatedAgentKey;
use streamspace_store::{ApiKeyKind, ApiKeyRecord, AuditEntry, NewApiKey, Store, StoreError};
use uuid::Uuid;

use crate::error::ServerError;

/// Name of the setting holding the server-wide HMAC secret.
pub const HMAC_SECRET_SETTING: &str = "hmac_secret";
/// Prefix of admin tokens.
pub const ADMIN_PREFIX: &str = "ssa_";
/// Prefix of agent keys.
pub const AGENT_PREFIX: &str = "ssk_";
/// Prefix of personal API tokens.
pub const TOKEN_PREFIX: &str = "ssp_";
/// Prefix of browser session secrets.
pub const BROWSER_PREFIX: &str = "ssb_";
/// How many leading characters of a key are kept to tell keys apart in listings.
const SHOWN_PREFIX_CHARS: usize = 12;

/// Hashes presented keys with the server secret.
#[derive(Clone)]
pub struct KeyHasher {
    secret: Arc<Vec<u8>>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher { secret: <hidden> }")
    }
}

impl KeyHasher {
    /// Reads the server secret, creating it if this is the first start.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let secret = store
            .setting_get_or_init(HMAC_SECRET_SETTING, &fresh)
            .await?;
        Ok(Self::from_secret(secret.into_bytes()))
    }

    /// A hasher with a given secret.
    pub(crate) fn from_secret(secret: Vec<u8>) -> Self {
        Self {
            secret: Arc::new(secret),
        }
    }

    /// The keyed hash stored for `key`, in hex.
    pub fn hash(&self, key: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Looks up the credential `key` names, if it is neither revoked nor expired.
    pub async fn find(
        &self,
        store: &dyn Store,
        key: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        store.find_api_key(&self.hash(key)).await
    }
}

/// A new random secret: `prefix` + base64url of 32 random bytes.
pub fn generate_secret(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

fn shown_prefix(secret: &str) -> String {
    secret.chars().take(SHOWN_PREFIX_CHARS).collect()
}

/// Whether `agent_id` is acceptable as an agent's name: 1–128 characters of `A-Z a-z 0-9 . _ -`.
pub fn valid_agent_id(agent_id: &str) -> bool {
    !agent_id.is_empty()
        && agent_id.len() <= 128
        && agent_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Stores a credential for `secret` and returns its record; `audit` makes the audit entry of
/// the credential's creation from its id (written in the same transaction).
pub(crate) async fn store_key(
    store: &dyn Store,
    hasher: &KeyHasher,
    kind: ApiKeyKind,
    agent_id: Option<String>,
    secret: &str,
    audit: impl FnOnce(Uuid) -> AuditEntry,
) -> Result<ApiKeyRecord, StoreError> {
    let id = Uuid::now_v7();
    store
        .create_api_key(
            NewApiKey {
                id,
                kind,
                agent_id,
                user_id: (kind == ApiKeyKind::Admin)
                    .then_some(streamspace_store::BOOTSTRAP_ADMIN_ID),
                name: if kind == ApiKeyKind::Admin {
                    "bootstrap".into()
                } else {
                    String::new()
                },
                prefix: shown_prefix(secret),
                key_hash: hasher.hash(secret),
                expires_in_secs: None,
            },
            &audit(id),
        )
        .await
}

/// Creates a credential acting as `user_id` (a personal token or a browser session) and
/// returns its record with the secret, shown this once; `audit` makes the audit entry of its
/// creation from its id (written in the same transaction).
pub(crate) async fn create_user_credential(
    store: &dyn Store,
    hasher: &KeyHasher,
    kind: ApiKeyKind,
    user_id: Uuid,
    name: &str,
    expires_in_secs: Option<f64>,
    audit: impl FnOnce(Uuid) -> AuditEntry,
) -> Result<(ApiKeyRecord, String), StoreError> {
    let prefix = match kind {
        ApiKeyKind::Browser => BROWSER_PREFIX,
        _ => TOKEN_PREFIX,
    };
    let secret = generate_secret(prefix);
    let id = Uuid::now_v7();
    let record = store
        .create_api_key(
            NewApiKey {
                id,
                kind,
                agent_id: None,
                user_id: Some(user_id),
                name: name.to_owned(),
                prefix: shown_prefix(&secret),
                key_hash: hasher.hash(&secret),
                expires_in_secs,
            },
            &audit(id),
        )
        .await?;
    Ok((record, secret))
}

/// Creates an agent key bound to `agent_id` with an already loaded hasher; `audit` makes the
/// audit entry of its creation from its id.
pub(crate) async fn create_agent_key_with(
    store: &dyn Store,
    hasher: &KeyHasher,
    agent_id: &str,
    audit: impl FnOnce(Uuid) -> AuditEntry,
) -> Result<CreatedAgentKey, ServerError> {
    if !valid_agent_id(agent_id) {
        return Err(ServerError::InvalidInput(format!(
            "agent id {agent_id:?} must be 1-128 characters of letters, digits, '.', '_' or '-'"
        )));
    }
    let secret = generate_secret(AGENT_PREFIX);
    let record = store_key(
        store,
        hasher,
        ApiKeyKind::Agent,
        Some(agent_id.to_owned()),
        &secret,
        audit,
    )
    .await?;
    let key = record.to_agent_key().ok_or_else(|| {
        StoreError::Corrupt("a stored agent key came back without its agent id".into())
    })?;
    Ok(CreatedAgentKey { key, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bit_and_prefixed() {
        let s = generate_secret(AGENT_PREFIX);
        let body = s.strip_prefix(AGENT_PREFIX).unwrap_or_default();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).map(|b| b.len()).ok(), Some(32));
        assert_ne!(s, generate_secret(AGENT_PREFIX));
    }

    #[test]
    fn hash_is_keyed_and_not_the_secret() {
        let a = KeyHasher::from_secret(b"one".to_vec());
        let b = KeyHasher::from_secret(b"two".to_vec());
        let key = generate_secret(ADMIN_PREFIX);
        assert_eq!(a.hash(&key), a.hash(&key));
        assert_ne!(
            a.hash(&key),
            b.hash(&key),
            "the server secret must key the hash"
        );
        assert_ne!(a.hash(&key), key);
        assert_eq!(a.hash(&key).len(), 64);
        assert!(!format!("{a:?}").contains("one"));
    }

    #[test]
    fn agent_ids_are_checked() {
        assert!(valid_agent_id("k8s-prod.eu_1"));
        assert!(!valid_agent_id(""));
        assert!(!valid_agent_id("a b"));
        assert!(!valid_agent_id(&"a".repeat(129)));
    }
}
