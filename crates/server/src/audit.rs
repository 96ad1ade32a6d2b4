//! The audit log: who changed what, from where. Written by handlers after a change, through
//! [`record`].

use serde_json::Value;
use streamspace_store::AuditEntry;

use crate::auth::Actor;
use crate::state::AppState;

/// Records a mutating call; a failure to audit is logged, not returned (the change is made).
pub(crate) async fn record(
    app: &AppState,
    actor: &Actor,
    action: &str,
    target: String,
    detail: Value,
) {
    let entry = AuditEntry {
        actor: actor.name(),
        actor_id: Some(actor.user_id()),
        client_addr: actor.client_addr.clone(),
        action: action.to_owned(),
        target,
        detail,
    };
    if let Err(e) = app.store.audit(&entry).await {
        tracing::error!(error = %e, action, "writing the audit log failed");
    }
}
