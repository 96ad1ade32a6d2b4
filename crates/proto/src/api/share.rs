//! Share links: a session's owner lets other signed-in users watch it, or control it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a share link lets its users do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ShareMode {
    /// Watch only: keys, pointer, clipboard and resizing are dropped by the server.
    ViewOnly,
    /// Keyboard, pointer and clipboard, as the owner.
    Control,
}

impl ShareMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ViewOnly => "view_only",
            Self::Control => "control",
        }
    }
}

/// Longest a share link may live: a week.
pub const MAX_SHARE_SECS: u64 = 7 * 24 * 3600;

/// `POST /api/v1/sessions/{id}/shares`. Give `expires_in_secs` or `expires_at` (not both;
/// neither means one hour); at most [`MAX_SHARE_SECS`] from now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateShare {
    pub mode: ShareMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Only these users (by username) may use the link, with the members of `groups`; both
    /// empty: anyone signed in who has the link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// A share link of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Share {
    pub id: Uuid,
    pub session_id: Uuid,
    /// Username of who made it (`None` once that user is deleted).
    pub created_by: Option<String>,
    pub mode: ShareMode,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The web UI's page for the link (`/shared/{id}`), relative to the server's address.
    pub link: String,
}

impl Share {
    /// Whether the link still opens the session at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// The web UI's path for share link `id`.
pub fn share_link(id: Uuid) -> String {
    format!("/shared/{id}")
}

/// Someone watching a session right now (`GET /api/v1/sessions/{id}/viewers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Viewer {
    /// The viewer's stream; `DELETE /api/v1/sessions/{id}/viewers/{viewer_id}` disconnects it.
    pub id: Uuid,
    /// Username of who watches.
    pub user: String,
    pub mode: ShareMode,
    /// The share link they came through, if any.
    pub share_id: Option<Uuid>,
    pub since: DateTime<Utc>,
    /// The control-plane replica carrying the stream.
    pub replica: String,
}
