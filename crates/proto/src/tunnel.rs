//! The data side of a viewer's stream: what the browser, the control plane and the agent agree
//! on besides the JSON control messages.
//!
//! Each viewer gets its own pair of WebSockets — browser ↔ control plane and agent ↔ control
//! plane (the *data connection*) — and the bytes of the VNC stream travel in **binary frames**
//! with no envelope of ours: a frame holds whatever the sender read from its side. There is
//! therefore no frame codec to parse; what is fixed is where to connect, how to authenticate,
//! how big a frame may be, and which close codes mean what.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The agent's data-connection endpoint, under the control plane's base URL.
pub const AGENT_TUNNEL_PATH: &str = "api/v1/agents/tunnel";
/// Query parameter carrying a token (browsers cannot set headers on WebSockets).
pub const TOKEN_PARAM: &str = "token";
/// Prefix of one-time stream tokens (agent data connections).
pub const STREAM_TOKEN_PREFIX: &str = "sst_";
/// Prefix of viewer tokens (browser WebSocket).
pub const VIEWER_TOKEN_PREFIX: &str = "ssv_";
/// The only WebSocket subprotocol the viewer endpoint answers (websockify's); offering none is
/// fine too, which is what stock noVNC does.
pub const BINARY_SUBPROTOCOL: &str = "binary";

/// Most bytes the agent reads from the VNC server into one frame (it starts smaller and grows
/// while the server has more to send: large frames mean fewer messages on every hop).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Largest frame or message accepted on either data WebSocket.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Most bytes a WebSocket may hold unsent before writes fail: a few frames, never more.
pub const MAX_WRITE_BUFFER_BYTES: usize = 2 * MAX_FRAME_BYTES;

/// Close codes on the viewer's and the agent's data connections.
pub mod close_code {
    /// The stream ended: the viewer left, the session stopped, or its VNC server closed the
    /// connection.
    pub const NORMAL: u16 = 1000;
    /// The control plane is going away.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame on a binary-only stream.
    pub const UNSUPPORTED: u16 = 1003;
    /// The agent could not open the stream (see the reason).
    pub const TUNNEL_FAILED: u16 = 1011;
    /// The viewer stopped reading: a send did not finish within the send timeout.
    pub const SLOW_VIEWER: u16 = 1013;
}

/// Answer to `POST /api/v1/sessions/{id}/connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectInfo {
    /// The viewer token (also in `url`'s query string).
    pub token: String,
    /// The WebSocket URL to open (`ws://` or `wss://…/api/v1/sessions/{id}/vnc?token=…`).
    pub url: String,
    /// After this moment the token opens nothing.
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_info_has_the_documented_fields() {
        let info = ConnectInfo {
            token: "ssv_x".into(),
            url: "ws://h/api/v1/sessions/1/vnc?token=ssv_x".into(),
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
        };
        let json = serde_json::to_value(&info).unwrap_or_default();
        let mut keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(keys, ["expires_at", "token", "url"]);
    }

    #[test]
    fn buffers_hold_a_few_frames_only() {
        const { assert!(CHUNK_BYTES <= MAX_FRAME_BYTES) };
        const { assert!(MAX_WRITE_BUFFER_BYTES >= MAX_FRAME_BYTES) };
    }
}
