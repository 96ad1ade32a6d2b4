//! The audit log: who changed what, from where.
//!
//! A change and its audit entry commit together or not at all: every store method that changes
//! something takes the [`AuditEntry`] recording it and writes it inside its own transaction
//! (see `streamspace_store`'s "Audit" section). A handler builds that entry with [`entry`] and
//! hands it to the store call; if the entry cannot be written the change is rolled back and the
//! request answers 500. Only events that change nothing (a failed sign-in, a viewer token
//! issued, signing out with the bootstrap admin token) are written on their own, by
//! [`record_event`].

use serde_json::Value;
use streamspace_store::AuditEntry;

use crate::auth::Actor;
use crate::state::AppState;

/// The entry recording `actor` doing `action` to `target`, for the store call that does it.
pub(crate) fn entry(
    actor: &Actor,
    action: &str,
    target: impl Into<String>,
    detail: Value,
) -> AuditEntry {
    AuditEntry {
        actor: actor.name(),
        actor_id: Some(actor.user_id()),
        client_addr: actor.client_addr.clone(),
        action: action.to_owned(),
        target: target.into(),
        detail,
    }
}

/// Writes an entry for an event that changes nothing; a failure is logged, not returned (there
/// is no change to roll back).
pub(crate) async fn record_event(app: &AppState, entry: &AuditEntry) {
    if let Err(e) = app.store.audit_event(entry).await {
        tracing::error!(error = %e, action = %entry.action, "writing the audit log failed");
    }
}
