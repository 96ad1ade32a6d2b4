//! Recordings: the metadata of recorded viewings (the streams themselves are in the server's
//! recording store, found by `storage_key`).
//!
//! [`Recordings`] is a supertrait of [`crate::Store`]. A recording is created when a recorded
//! viewing starts (audited as the viewer's), finished when it ends (bookkeeping: bytes and
//! whether it is complete), deleted by someone (audited) or by retention (bookkeeping, like
//! the other purges).

use async_trait::async_trait;
use streamspace_proto::api::Recording;
use uuid::Uuid;

use crate::{AuditEntry, Result};

/// A recording about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecording {
    pub id: Uuid,
    pub session_id: Uuid,
    /// The session's owner.
    pub owner_id: Option<Uuid>,
    pub viewer_id: Uuid,
    pub viewer: String,
    /// Where the stream is stored, in the recording store.
    pub storage_key: String,
}

/// A recording and where its stream is stored (which the API never shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecording {
    pub recording: Recording,
    pub storage_key: String,
}

/// Recording metadata. All methods are safe to call from several replicas at once.
#[async_trait]
pub trait Recordings: Send + Sync {
    /// Stores a new recording (started now, not complete) and writes `audit`.
    async fn create_recording(&self, new: &NewRecording, audit: &AuditEntry) -> Result<Recording>;
    /// Records its end (now), size and whether nothing is missing; `NotFound` if it is gone.
    async fn finish_recording(&self, id: Uuid, bytes: u64, complete: bool) -> Result<()>;
    /// `NotFound` if there is none.
    async fn get_recording(&self, id: Uuid) -> Result<StoredRecording>;
    /// The recordings of a session, newest first, at most `limit`, only those with an id below
    /// `before` when given.
    async fn list_recordings(
        &self,
        session_id: Uuid,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Recording>>;
    /// Deletes the row and writes `audit`; returns what was deleted (`NotFound` if nothing).
    async fn delete_recording(&self, id: Uuid, audit: &AuditEntry) -> Result<StoredRecording>;
    /// Up to `limit` of the oldest recordings that ended (or, never ended, started) more than
    /// `older_than_secs` ago, for retention.
    async fn expired_recordings(
        &self,
        older_than_secs: f64,
        limit: i64,
    ) -> Result<Vec<StoredRecording>>;
    /// Deletes the row without an audit entry (retention); false if it was already gone.
    async fn forget_recording(&self, id: Uuid) -> Result<bool>;
}

/// Statements both backends share.
pub(crate) mod sql {
    macro_rules! recording_columns {
        () => {
            "id, session_id, owner_id, viewer_id, viewer, started_at, ended_at, bytes, \
             storage_key, complete"
        };
    }
    pub(crate) use recording_columns;

    pub(crate) const INSERT: &str = concat!(
        "INSERT INTO recordings (id, session_id, owner_id, viewer_id, viewer, storage_key) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        recording_columns!()
    );
    pub(crate) const GET: &str = concat!(
        "SELECT ",
        recording_columns!(),
        " FROM recordings WHERE id = $1"
    );
    pub(crate) const LIST: &str = concat!(
        "SELECT ",
        recording_columns!(),
        " FROM recordings WHERE session_id = $1 AND ($2 IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    );
    pub(crate) const DELETE: &str = concat!(
        "DELETE FROM recordings WHERE id = $1 RETURNING ",
        recording_columns!()
    );
    pub(crate) const FORGET: &str = "DELETE FROM recordings WHERE id = $1";
}
