//! Recordings of viewings: what one viewer of a session was shown, kept for playback.
//!
//! The stream itself (the recording format, see the server's `recording` module) is read
//! through `GET /api/v1/recordings/{id}/data`; this is its metadata.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One recorded viewing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recording {
    pub id: Uuid,
    /// The session that was watched.
    pub session_id: Uuid,
    /// The session's owner when it was recorded (who may read it, besides admins).
    pub owner_id: Option<Uuid>,
    /// Who watched.
    pub viewer_id: Uuid,
    /// The viewer's username at the time.
    pub viewer: String,
    pub started_at: DateTime<Utc>,
    /// Absent while the viewing goes on (or if the replica recording it stopped abruptly).
    pub ended_at: Option<DateTime<Utc>>,
    /// Size of the stored recording, in bytes (known once it has ended).
    pub bytes: u64,
    /// False when part of the viewing is missing: storage could not keep up or failed, or the
    /// recording never ended properly. What was stored still plays up to the gap.
    pub complete: bool,
}
