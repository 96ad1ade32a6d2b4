//! Share links of sessions (`session_shares`, see [`Shares`]).
//!
//! A link is made by the session's owner (or an operator), used by other signed-in users to
//! open a viewer, and revoked or left to expire. Rows are never deleted by the API: a revoked
//! link keeps its row, and links go with their session when it is purged.

use async_trait::async_trait;
use streamspace_proto::api::{Share, ShareMode};
use uuid::Uuid;

use crate::{AuditEntry, Result};

/// A share link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShare {
    pub id: Uuid,
    pub session_id: Uuid,
    pub created_by: Uuid,
    pub mode: ShareMode,
    /// Seconds from the database's now until the link expires.
    pub expires_in_secs: u64,
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

/// Share links. All methods are safe to call from several replicas at once.
#[async_trait]
pub trait Shares: Send + Sync {
    /// Creates a link; `audit` is written in the same transaction.
    async fn create_share(&self, new: &NewShare, audit: &AuditEntry) -> Result<Share>;
    /// The link `id` (revoked and expired ones too).
    async fn get_share(&self, id: Uuid) -> Result<Share>;
    /// The links of a session, oldest first (revoked and expired ones too).
    async fn list_shares(&self, session_id: Uuid) -> Result<Vec<Share>>;
    /// Revokes link `id` (a link revoked already keeps its first revocation time) and returns
    /// it; `audit` is written in the same transaction.
    async fn revoke_share(&self, id: Uuid, audit: &AuditEntry) -> Result<Share>;
}

/// Statements both backends share.
pub(crate) mod sql {
    macro_rules! select {
        ($where:literal) => {
            concat!(
                "SELECT s.id, s.session_id, u.username AS created_by, s.mode, s.allowed_users, \
                 s.allowed_groups, s.expires_at, s.revoked_at, s.created_at \
                 FROM session_shares s LEFT JOIN users u ON u.id = s.created_by ",
                $where
            )
        };
    }
    pub(crate) const SHARE_BY_ID: &str = select!("WHERE s.id = $1");
    pub(crate) const SHARES_OF_SESSION: &str =
        select!("WHERE s.session_id = $1 ORDER BY s.created_at, s.id");
}
