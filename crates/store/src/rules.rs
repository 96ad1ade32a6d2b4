//! Session rules as stored: on groups (read at the moment of use) and the copy each session
//! keeps of its template's rules from its creation. Templates carry theirs as a field of the
//! template. Which rule applies is [`SessionRules::effective`]'s decision; the store only hands
//! over the levels.

use async_trait::async_trait;
use streamspace_proto::api::SessionRules;
use uuid::Uuid;

use crate::{AuditEntry, Result};

/// Reading and setting session rules. All methods are safe to call from several replicas at once.
#[async_trait]
pub trait Rules: Send + Sync {
    /// The rules set on the group; `NotFound` if no such group.
    async fn group_rules(&self, name: &str) -> Result<SessionRules>;
    /// Replaces the group's rules whole; `NotFound` if no such group.
    async fn set_group_rules(
        &self,
        name: &str,
        rules: &SessionRules,
        audit: &AuditEntry,
    ) -> Result<SessionRules>;
    /// The rules of every group the user (by id) is a member of, in no particular order.
    async fn user_group_rules(&self, user_id: Uuid) -> Result<Vec<SessionRules>>;
    /// The copy of its template's rules the session took when it was created; `NotFound` if no
    /// such session.
    async fn session_rules(&self, session_id: Uuid) -> Result<SessionRules>;
}

pub(crate) mod sql {
    pub(crate) const GROUP_RULES: &str = "SELECT rules FROM groups WHERE name = $1";
    pub(crate) const GROUP_RULES_SET: &str = "UPDATE groups SET rules = $2 WHERE name = $1";
    pub(crate) const USER_GROUP_RULES: &str = "SELECT g.rules FROM group_members m \
         JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1";
    pub(crate) const SESSION_RULES: &str = "SELECT rules FROM sessions WHERE id = $1";
}

/// Rules as read from a JSON column.
pub(crate) fn from_column(what: &str, value: serde_json::Value) -> Result<SessionRules> {
    serde_json::from_value(value)
        .map_err(|e| crate::StoreError::Corrupt(format!("{what} rules: {e}")))
}
