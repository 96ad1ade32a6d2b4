//! The actor of a request — a signed-in user and the credential they used — and the cache of
//! recently resolved ones. Kept apart from `auth` (which resolves actors and needs the shared
//! state) so that the state can hold the cache without the two modules using each other.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use streamspace_store::ApiKeyKind;
use uuid::Uuid;

use crate::error::ApiError;
use crate::policy::{self, Principal};

/// Most credentials remembered at once.
const CACHE_MAX: usize = 4096;

/// Who made a request, resolved once per request by `auth::require_user`.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub principal: Principal,
    /// The credential used (to revoke it on sign-out).
    pub credential_id: Uuid,
    pub kind: ApiKeyKind,
    /// The client's address, for the audit log and sign-in throttling.
    pub client_addr: Option<String>,
}

impl Actor {
    /// The actor in words, for the audit log.
    pub fn name(&self) -> String {
        format!("user:{}", self.principal.username)
    }

    pub fn user_id(&self) -> Uuid {
        self.principal.user_id
    }

    /// Asks the policy; a refusal becomes the answer to send.
    pub fn may(
        &self,
        action: policy::Action,
        resource: policy::Resource<'_>,
    ) -> Result<(), ApiError> {
        policy::decide(&self.principal, action, resource).map_err(policy::Denial::into_error)
    }

    /// Whether the policy allows it (for filtering listings).
    pub fn allowed(&self, action: policy::Action, resource: policy::Resource<'_>) -> bool {
        policy::decide(&self.principal, action, resource).is_ok()
    }
}

/// Actors resolved recently, by the keyed hash of their credential, each trusted for `ttl`
/// (`ServerConfig::credential_cache_ttl`); and credentials the store did not know, so a flood
/// of one made-up token costs one lookup per `ttl`.
pub(crate) struct CredentialCache {
    ttl: Duration,
    /// `None`: no such credential.
    entries: Mutex<HashMap<String, (Option<Actor>, Instant)>>,
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// `Some(Some(actor))`: known; `Some(None)`: known not to exist; `None`: ask the store.
    pub fn get(&self, hash: &str) -> Option<Option<Actor>> {
        let entries = self.lock();
        let (actor, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| actor.clone())
    }

    pub fn insert(&self, hash: String, actor: Actor) {
        self.remember(hash, Some(actor));
    }

    /// Remembers that no credential has this hash.
    pub fn insert_unknown(&self, hash: String) {
        self.remember(hash, None);
    }

    fn remember(&self, hash: String, actor: Option<Actor>) {
        let mut entries = self.lock();
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        if entries.len() < CACHE_MAX {
            entries.insert(hash, (actor, Instant::now()));
        }
    }

    /// Forgets everything: called after a change that may take a credential's power away.
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<Actor>, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
