//! Credentials: the bootstrap admin token, agent keys, personal API tokens and browser sessions.
//!
//! A key is 256 random bits, shown to its owner once (`ssa_…` for the admin token, `ssk_…` for
//! agent keys, `ssp_…` for personal tokens, `ssb_…` for browser sessions; base64url). The
//! database keeps only its keyed hash (HMAC-SHA256 in hex) under the key of its purpose (see
//! [`crate::keyring`]: browser sessions have their own), so a leaked table does not leak keys,
//! and checking a key is one hash plus one indexed lookup — no slow password hash per request.
//! A key stored under an older key (the previous master secret's, or the single server secret
//! of earlier versions) is found by [`find`] and re-hashed under the current key on that use.
//! Resolved users are cached by `auth`, not here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use streamspace_proto::api::CreatedAgentKey;
use streamspace_store::{ApiKeyKind, ApiKeyRecord, AuditEntry, NewApiKey, Store, StoreError};
use uuid::Uuid;

use crate::error::ServerError;
use crate::keyring::{CredentialHashing, Keyring, Keys, Purpose};

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

/// Looks up the credential `secret` names, if it is neither revoked nor expired: by its hash
/// under the current key, else under an older one — then it is re-hashed under the current key.
pub(crate) async fn find<P: Purpose>(
    store: &dyn Store,
    keyring: &Keyring<P>,
    secret: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let current = keyring.mac(secret);
    if let Some(record) = store.find_api_key(&current).await? {
        return Ok(Some(record));
    }
    find_older(store, keyring, secret).await
}

/// The second half of [`find`], for a secret not found under the current key: its hash under
/// an older key, re-hashed under the current one when found.
pub(crate) async fn find_older<P: Purpose>(
    store: &dyn Store,
    keyring: &Keyring<P>,
    secret: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    let current = keyring.mac(secret);
    for old in keyring.older_macs(secret) {
        let Some(record) = store.find_api_key(&old).await? else {
            continue;
        };
        if store.rehash_api_key(record.id, &old, &current).await? {
            tracing::info!(key_id = %record.id, kind = record.kind.as_str(),
                "re-hashed a credential under the current key");
        }
        return Ok(Some(record));
    }
    Ok(None)
}

/// Whether a credential with this secret was stored and revoked, under any accepted key.
pub(crate) async fn is_revoked<P: Purpose>(
    store: &dyn Store,
    keyring: &Keyring<P>,
    secret: &str,
) -> Result<bool, StoreError> {
    for hash in std::iter::once(keyring.mac(secret)).chain(keyring.older_macs(secret)) {
        if store.is_key_revoked(&hash).await? {
            return Ok(true);
        }
    }
    Ok(false)
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
    keyring: &Keyring<CredentialHashing>,
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
                key_hash: keyring.mac(secret),
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
    keys: &Keys,
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
    let key_hash = match kind {
        ApiKeyKind::Browser => keys.sessions.mac(&secret),
        _ => keys.credentials.mac(&secret),
    };
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
                key_hash,
                expires_in_secs,
            },
            &audit(id),
        )
        .await?;
    Ok((record, secret))
}

/// Creates an agent key bound to `agent_id` with already loaded keys; `audit` makes the
/// audit entry of its creation from its id.
pub(crate) async fn create_agent_key_with(
    store: &dyn Store,
    keyring: &Keyring<CredentialHashing>,
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
        keyring,
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
    fn agent_ids_are_checked() {
        assert!(valid_agent_id("k8s-prod.eu_1"));
        assert!(!valid_agent_id(""));
        assert!(!valid_agent_id("a b"));
        assert!(!valid_agent_id(&"a".repeat(129)));
    }
}
