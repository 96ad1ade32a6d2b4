//! The data side of a viewer's stream: what the browser, the control plane and the agent agree
//! on besides the JSON control messages.
//!
//! Each viewer gets its own pair of connections — a WebSocket browser ↔ control plane, and
//! agent ↔ control plane the *data connection*, a raw stream after an HTTP upgrade to
//! [`RAW_STREAM_PROTOCOL`] or, as the fallback, a WebSocket — and the bytes of the VNC stream
//! travel with no envelope of ours: a WebSocket frame holds whatever the sender read from its
//! side. There is therefore no frame codec to parse; what is fixed is where to connect, how to
//! authenticate, how big a frame may be, and which close codes mean what.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The agent's data-connection endpoint, under the control plane's base URL.
pub const AGENT_TUNNEL_PATH: &str = "api/v1/agents/tunnel";
/// The `Upgrade` protocol of a raw data connection: after `101 Switching Protocols` the
/// connection carries the stream's bytes as they are, with no frames, in both directions. The
/// agent asks for it first and falls back to a WebSocket when the answer is anything else (a
/// load balancer that passes only WebSocket upgrades); replicas use it for their one hop.
pub const RAW_STREAM_PROTOCOL: &str = "streamspace-stream/1";
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
/// Size of a stream's first read from the VNC server or a raw data connection; see
/// [`next_read_size`].
pub const FIRST_READ_BYTES: usize = 64 * 1024;
const _: () = assert!(FIRST_READ_BYTES <= CHUNK_BYTES);

/// The next read's size after a read of `size` returned `read` bytes: twice as much (up to
/// [`CHUNK_BYTES`]) when it filled the buffer, half as much (down to [`FIRST_READ_BYTES`]) when
/// it filled less than half. A bulk update then travels in few large chunks — fewer messages
/// and system calls on every hop to the viewer — while a quiet stream keeps small buffers.
pub fn next_read_size(size: usize, read: usize) -> usize {
    next_read_size_from(FIRST_READ_BYTES, size, read)
}

/// [`next_read_size`] shrinking down to `smallest` instead: for reads whose buffer waits, held,
/// for the next bytes of a quiet stream (the replica's reads from a raw data connection), where
/// a smaller floor is less memory per open viewer.
pub fn next_read_size_from(smallest: usize, size: usize, read: usize) -> usize {
    if read >= size {
        (size * 2).min(CHUNK_BYTES)
    } else if read < size / 2 {
        (size / 2).max(smallest)
    } else {
        size
    }
}

/// Largest frame or message accepted on a WebSocket of a stream (the viewer's, or an agent's data
/// connection when it is one).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Most bytes a WebSocket may hold unsent before writes fail: a few frames, never more.
pub const MAX_WRITE_BUFFER_BYTES: usize = 2 * MAX_FRAME_BYTES;
/// The read buffer of every WebSocket a viewer's stream passes through (the viewer's, the
/// agent's data connection on both ends, the hop between replicas). tungstenite's default,
/// 128 KiB, was most of what each open stream cost in memory; a larger frame is read in
/// several reads into its message, so throughput barely changes.
pub const STREAM_READ_BUFFER_BYTES: usize = 16 * 1024;

/// Close codes on the viewer's and the agent's data connections.
pub mod close_code {
    /// The stream ended: the viewer left, the session stopped, or its VNC server closed the
    /// connection.
    pub const NORMAL: u16 = 1000;
    /// The control plane is going away.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame on a binary-only stream.
    pub const UNSUPPORTED: u16 = 1003;
    /// The viewer lost the right to watch (access or share link revoked, disconnected by the
    /// owner), or sent what its stream does not allow (an unknown or malformed RFB message).
    pub const POLICY: u16 = 1008;
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
    /// Whether this viewing will be recorded (the session's recording policy is `always`, or
    /// `on_request` and the request asked for it). The web viewer shows it.
    #[serde(default)]
    pub recorded: bool,
    /// What the viewer may do: `view_only` when it came through a view-only share link
    /// (the server drops its input), else `control`.
    #[serde(default = "control")]
    pub mode: crate::api::ShareMode,
    /// The clipboard this viewer has: the session rules' clipboard policy for the viewer's
    /// user, and `none` through a view-only link. The tunnel enforces it; the web viewer offers
    /// only the tools it allows.
    #[serde(default)]
    pub clipboard: crate::api::ClipboardPolicy,
}

/// Body of `POST /api/v1/sessions/{id}/connect` (optional: no body asks for nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Ask for this viewing to be recorded; honoured when the session's recording policy is
    /// `on_request` (under `always` every viewing is recorded anyway, under `off` none is).
    #[serde(default)]
    pub record: bool,
}

/// Query parameter of the viewer URL asking for the viewing to be recorded (`record=1`).
pub const RECORD_PARAM: &str = "record";

fn control() -> crate::api::ShareMode {
    crate::api::ShareMode::Control
}

/// The fields of a viewer token,
/// `ssv_<session>.<user>.<expires ms>.<grant>.<nonce>.<signature>` (ids in simple hex form).
/// Parsing checks only the shape; the control plane checks the signature over
/// [`ViewerTokenParts::signed`] before it trusts any field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerTokenParts<'a> {
    /// The part the signature covers: everything between the prefix and the last `.`.
    pub signed: &'a str,
    pub signature: &'a str,
    pub session_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    /// When the token stops opening anything, in milliseconds since the Unix epoch.
    pub expires_ms: i64,
    /// What the viewer may do and why (the session's own user, or a share link): written and
    /// read by the control plane, never empty and without dots.
    pub grant: &'a str,
    pub nonce: &'a str,
}

/// Longest viewer token accepted: two ids, a time, a nonce and a signature fit in far less.
pub const MAX_VIEWER_TOKEN_BYTES: usize = 512;

/// The fields of `token` if it has a viewer token's shape; `None` for anything else, however
/// malformed (never a panic).
pub fn parse_viewer_token(token: &str) -> Option<ViewerTokenParts<'_>> {
    if token.len() > MAX_VIEWER_TOKEN_BYTES {
        return None;
    }
    let rest = token.strip_prefix(VIEWER_TOKEN_PREFIX)?;
    let (signed, signature) = rest.rsplit_once('.')?;
    let mut parts = signed.split('.');
    let (Some(session), Some(user), Some(expires), Some(grant), Some(nonce), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if signature.is_empty() || nonce.is_empty() || grant.is_empty() {
        return None;
    }
    Some(ViewerTokenParts {
        signed,
        signature,
        session_id: uuid::Uuid::try_parse(session).ok()?,
        user_id: uuid::Uuid::try_parse(user).ok()?,
        expires_ms: expires.parse().ok()?,
        grant,
        nonce,
    })
}

/// The part of a viewer token its signature covers, for these fields.
pub fn viewer_token_signed_part(
    session_id: uuid::Uuid,
    user_id: uuid::Uuid,
    expires_ms: i64,
    grant: &str,
    nonce: &str,
) -> String {
    format!(
        "{}.{}.{expires_ms}.{grant}.{nonce}",
        session_id.simple(),
        user_id.simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_grow_while_the_vnc_server_has_more_and_shrink_when_it_is_quiet() {
        let mut size = FIRST_READ_BYTES;
        for _ in 0..10 {
            size = next_read_size(size, size);
        }
        assert_eq!(
            size, CHUNK_BYTES,
            "full reads grow the buffer to the largest frame"
        );
        assert_eq!(
            next_read_size(size, size / 2),
            size,
            "half-full reads keep it"
        );
        for _ in 0..10 {
            size = next_read_size(size, 100);
        }
        assert_eq!(size, FIRST_READ_BYTES, "small reads shrink it back");
        let floor = STREAM_READ_BUFFER_BYTES;
        assert_eq!(next_read_size_from(floor, floor, floor), 2 * floor);
        assert_eq!(next_read_size_from(floor, 4 * floor, 1), 2 * floor);
        assert_eq!(
            next_read_size_from(floor, floor, 1),
            floor,
            "not below the floor"
        );
    }

    proptest! {
        /// Whatever arrives as `?token=`, parsing answers and never panics.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,600}") {
            let _ = parse_viewer_token(&text);
            let prefixed = format!("{VIEWER_TOKEN_PREFIX}{text}");
            let _ = parse_viewer_token(&prefixed);
        }

        /// What the control plane writes reads back to the same fields.
        #[test]
        fn tokens_read_back(session: u128, user: u128, expires: i64, grant in "[a-z0-9-]{1,40}", nonce in "[0-9a-f]{1,24}", sig in "[0-9a-f]{1,64}") {
            let (session, user) = (uuid::Uuid::from_u128(session), uuid::Uuid::from_u128(user));
            let signed = viewer_token_signed_part(session, user, expires, &grant, &nonce);
            let token = format!("{VIEWER_TOKEN_PREFIX}{signed}.{sig}");
            let parts = parse_viewer_token(&token).expect("a token the server wrote parses");
            prop_assert_eq!(parts.signed, signed.as_str());
            prop_assert_eq!((parts.session_id, parts.user_id, parts.expires_ms), (session, user, expires));
            prop_assert_eq!((parts.nonce, parts.signature), (nonce.as_str(), sig.as_str()));
            prop_assert_eq!(parts.grant, grant.as_str());
        }
    }

    #[test]
    fn connect_info_has_the_documented_fields() {
        let info = ConnectInfo {
            token: "ssv_x".into(),
            url: "ws://h/api/v1/sessions/1/vnc?token=ssv_x".into(),
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            recorded: true,
            mode: crate::api::ShareMode::ViewOnly,
            clipboard: crate::api::ClipboardPolicy::None,
        };
        let json = serde_json::to_value(&info).unwrap_or_default();
        let mut keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "clipboard",
                "expires_at",
                "mode",
                "recorded",
                "token",
                "url"
            ]
        );
        assert_eq!(json["clipboard"], "none");
        assert_eq!(json["mode"], "view_only");
    }

    #[test]
    fn buffers_hold_a_few_frames_only() {
        const { assert!(CHUNK_BYTES <= MAX_FRAME_BYTES) };
        const { assert!(MAX_WRITE_BUFFER_BYTES >= MAX_FRAME_BYTES) };
    }
}
