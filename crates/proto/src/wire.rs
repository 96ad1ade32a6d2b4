//! Control messages between the control plane and an agent.
//!
//! Every message is one JSON object in one WebSocket text frame: `{"v":1,"type":"…", …}`.
//! `v` is the protocol version; `type` selects the message. The decoders check the size before
//! parsing, reject other versions, and name unknown types separately from malformed JSON, so the
//! server can close a bad connection with a precise code and reason.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::api::{Action, SessionState, Template};

/// Version of the control protocol spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest control message accepted, in bytes. Commands and reports are small; anything bigger is
/// a bug or an attack.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// WebSocket close codes the control plane uses when it ends an agent connection.
pub mod close_code {
    /// Ordinary end of a connection.
    pub const NORMAL: u16 = 1000;
    /// Broken WebSocket framing.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The server failed on its side (database error at registration, write failure).
    pub const INTERNAL: u16 = 1011;
    /// The peer is not reading: its bounded outbound queue filled up.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The agent's text was not a valid message (bad JSON, missing fields, wrong version).
    pub const INVALID_MESSAGE: u16 = 1007;
    /// The agent is not allowed to do this (key bound to another agent, foreign session, …).
    pub const POLICY: u16 = 1008;
    /// The message exceeded [`super::MAX_MESSAGE_BYTES`].
    pub const TOO_BIG: u16 = 1009;
    /// A binary frame or an unexpected message on the control connection.
    pub const UNSUPPORTED: u16 = 1003;
    /// The replica is going away; reconnect (possibly elsewhere).
    pub const GOING_AWAY: u16 = 1001;
    /// A newer connection of the same agent replaced this one.
    pub const REPLACED: u16 = 4001;
    /// No heartbeat within three heartbeat intervals.
    pub const LIVENESS: u16 = 4002;
}

/// Resources an agent offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Most sessions this agent runs at once.
    pub max_sessions: u32,
}

/// First message on a new agent connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    pub agent_id: String,
    /// `process`, `docker` or `kubernetes`.
    pub platform: String,
    /// The agent's software version.
    pub version: String,
    pub capacity: Capacity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Sessions the agent holds right now (after a restart: what it re-adopted or lost).
    #[serde(default)]
    pub sessions: Vec<SessionStatus>,
    /// The agent wants a [`ServerMessage::ResultRecorded`] for every result it sends, and sends
    /// each result again until it gets one. Absent (false) from agents that predate receipts.
    #[serde(default, skip_serializing_if = "is_false")]
    pub result_receipts: bool,
    /// The agent's runtime keeps one home per user (templates with `persistent_home: user`)
    /// and understands `delete_user_home`. Absent (false) from agents that predate user
    /// homes: the control plane never places such sessions on them (an older agent could not
    /// even read the template).
    #[serde(default, skip_serializing_if = "is_false")]
    pub user_homes: bool,
    /// The agent understands [`ServerMessage::TransferOpen`]. Absent (false) from agents that
    /// predate file transfer: the control plane then answers `transfer_unsupported` itself
    /// instead of sending them a message they would skip.
    #[serde(default, skip_serializing_if = "is_false")]
    pub file_transfer: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Observed state of one session, reported by the agent that runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub session_id: Uuid,
    pub state: SessionState,
    /// Where the session's VNC server listens, as seen from the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc_address: Option<String>,
    /// Why, when the state is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Messages an agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Register(Register),
    Heartbeat {
        active_sessions: u32,
        capacity: Capacity,
    },
    /// The agent has the command and will run it.
    Ack {
        command_id: Uuid,
    },
    /// The command finished; `result` is kept with the command.
    Complete {
        command_id: Uuid,
        #[serde(default)]
        result: Value,
    },
    Failed {
        command_id: Uuid,
        error: String,
    },
    SessionStatus(SessionStatus),
    /// The agent could not open the tunnel asked for by `tunnel_open` (no such session, VNC
    /// unreachable, data connection refused).
    TunnelError {
        tunnel_id: Uuid,
        session_id: Uuid,
        error: String,
    },
    /// The agent ended a tunnel on its side (the session's VNC server closed the connection).
    TunnelClose {
        tunnel_id: Uuid,
        #[serde(default)]
        reason: String,
    },
}

/// Asks the agent to carry one viewer's stream: dial a data connection to the control plane
/// with `token` (a raw stream, or a WebSocket if that upgrade is refused; see
/// [`crate::tunnel::RAW_STREAM_PROTOCOL`]) and copy bytes between it and the session's VNC
/// server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelOpen {
    pub tunnel_id: Uuid,
    pub session_id: Uuid,
    /// One-time stream token, presented on the data connection (see [`crate::tunnel`]).
    pub token: String,
}

/// Asks the agent to carry one file transfer (see [`crate::transfer`]): dial a data WebSocket
/// (always a WebSocket: the transfer's frames carry tags) to the control plane with `token` and upload, download or list in the session's transfer
/// folder. Sent only to agents whose `register` said `file_transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOpen {
    pub transfer_id: Uuid,
    pub session_id: Uuid,
    /// One-time stream token, presented on the data connection.
    pub token: String,
    pub direction: crate::transfer::TransferDirection,
    /// The file, relative to the transfer folder (empty for `list`).
    #[serde(default)]
    pub path: String,
    /// Most bytes the transfer may carry; the agent enforces it while streaming.
    pub max_bytes: u64,
}

/// Body of a `start_session` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartSessionPayload {
    pub template: Template,
    /// The id of the session's owner, whose home the session mounts; sent only when the
    /// template's `persistent_home` is `user` (absent from older servers, which never send
    /// such templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
}

/// Body of a `delete_user_home` command: remove the home of the user `user_id` (deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteUserHomePayload {
    pub user_id: Uuid,
}

/// A command for the agent to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMessage {
    pub command_id: Uuid,
    pub action: Action,
    #[serde(default)]
    pub session_id: Option<Uuid>,
    /// Action-specific (for `start_session`: [`StartSessionPayload`]).
    #[serde(default)]
    pub payload: Value,
    /// 1 for the first delivery; more when resent.
    pub attempt: u32,
}

/// Messages the control plane sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `register`.
    Welcome {
        accepted: bool,
        heartbeat_interval_secs: u64,
        replica_id: String,
        /// This connection's epoch; bumps on every registration of the agent.
        epoch: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The server will answer every `complete` and `failed` on this connection with
        /// `result_recorded`. True only when the agent asked for receipts in `register`; absent
        /// (false) from servers that predate them.
        #[serde(default, skip_serializing_if = "is_false")]
        result_receipts: bool,
    },
    Command(CommandMessage),
    Ping,
    /// The replica is shutting down: reconnect, to another replica if there is one.
    Shutdown {
        reason: String,
    },
    TunnelOpen(TunnelOpen),
    /// The control plane ended a tunnel (viewer gone, session ended): drop it if still open.
    TunnelClose {
        tunnel_id: Uuid,
        #[serde(default)]
        reason: String,
    },
    /// The command's result is in the database (recorded now, or earlier: the command had
    /// already finished, or is unknown): the agent may stop resending it. Sent only on a
    /// connection whose `welcome` said `result_receipts`.
    ResultRecorded {
        command_id: Uuid,
    },
    TransferOpen(TransferOpen),
}

/// Why a control message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooBig { size: usize, limit: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {found} (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("unknown message type {0:?}")]
    UnknownType(String),
}

impl ProtoError {
    /// The WebSocket close code that answers this error.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooBig { .. } => close_code::TOO_BIG,
            Self::UnknownType(_) => close_code::UNSUPPORTED,
            Self::Malformed(_) | Self::UnsupportedVersion { .. } => close_code::INVALID_MESSAGE,
        }
    }
}

#[derive(Serialize)]
struct Outgoing<'a, T> {
    v: u32,
    #[serde(flatten)]
    msg: &'a T,
}

#[derive(Deserialize)]
struct Header {
    v: Option<u32>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Encodes a message as one JSON text frame.
pub fn encode<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(&Outgoing {
        v: PROTOCOL_VERSION,
        msg,
    })
    .expect("protocol messages contain only JSON-representable values")
}

/// Decodes what an agent sent.
pub fn decode_agent_message(text: &str) -> Result<AgentMessage, ProtoError> {
    decode(text, AGENT_TYPES)
}

/// Decodes what the control plane sent.
pub fn decode_server_message(text: &str) -> Result<ServerMessage, ProtoError> {
    decode(text, SERVER_TYPES)
}

/// The `command_id` of a text that claims to be a `command`, read without decoding the rest, so
/// a receiver can fail one command it cannot decode (an action or field this build does not
/// know) rather than drop it silently or drop its connection. `None` when the text is not a
/// JSON object of type `command` with a valid `command_id`.
pub fn command_id_of(text: &str) -> Option<Uuid> {
    #[derive(Deserialize)]
    struct CommandHeader {
        #[serde(rename = "type")]
        kind: Option<String>,
        command_id: Option<Uuid>,
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let header: CommandHeader = serde_json::from_str(text).ok()?;
    (header.kind.as_deref() == Some("command"))
        .then_some(header.command_id)
        .flatten()
}

const AGENT_TYPES: &[&str] = &[
    "register",
    "heartbeat",
    "ack",
    "complete",
    "failed",
    "session_status",
    "tunnel_error",
    "tunnel_close",
];
const SERVER_TYPES: &[&str] = &[
    "welcome",
    "command",
    "ping",
    "shutdown",
    "tunnel_open",
    "tunnel_close",
    "result_recorded",
    "transfer_open",
];

fn decode<T: DeserializeOwned>(text: &str, known: &[&str]) -> Result<T, ProtoError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtoError::TooBig {
            size: text.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    let header: Header =
        serde_json::from_str(text).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    match header.v {
        Some(PROTOCOL_VERSION) => {}
        Some(found) => return Err(ProtoError::UnsupportedVersion { found }),
        None => return Err(ProtoError::Malformed("missing field `v`".into())),
    }
    let kind = header
        .kind
        .ok_or_else(|| ProtoError::Malformed("missing field `type`".into()))?;
    if !known.contains(&kind.as_str()) {
        return Err(ProtoError::UnknownType(kind));
    }
    serde_json::from_str(text).map_err(|e| ProtoError::Malformed(format!("{kind}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_agent_messages() -> Vec<AgentMessage> {
        let id = Uuid::now_v7();
        vec![
            AgentMessage::Register(Register {
                agent_id: "a1".into(),
                platform: "process".into(),
                version: "0.1.0".into(),
                capacity: Capacity { max_sessions: 4 },
                labels: BTreeMap::from([("zone".into(), "lab".into())]),
                sessions: vec![SessionStatus {
                    session_id: id,
                    state: SessionState::Running,
                    vnc_address: Some("127.0.0.1:5901".into()),
                    message: None,
                }],
                result_receipts: true,
                user_homes: true,
                file_transfer: true,
            }),
            AgentMessage::Heartbeat {
                active_sessions: 1,
                capacity: Capacity { max_sessions: 4 },
            },
            AgentMessage::Ack { command_id: id },
            AgentMessage::Complete {
                command_id: id,
                result: serde_json::json!({"vnc_address": "127.0.0.1:5901"}),
            },
            AgentMessage::Failed {
                command_id: id,
                error: "no such session".into(),
            },
            AgentMessage::TunnelError {
                tunnel_id: id,
                session_id: id,
                error: "connection refused".into(),
            },
            AgentMessage::TunnelClose {
                tunnel_id: id,
                reason: "VNC server closed the connection".into(),
            },
        ]
    }

    #[test]
    fn agent_messages_round_trip() {
        for msg in sample_agent_messages() {
            let text = encode(&msg);
            assert!(text.starts_with("{\"v\":1,"), "{text}");
            assert_eq!(decode_agent_message(&text), Ok(msg));
        }
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = vec![
            ServerMessage::Welcome {
                accepted: true,
                heartbeat_interval_secs: 10,
                replica_id: "r1".into(),
                epoch: 3,
                reason: None,
                result_receipts: true,
            },
            ServerMessage::Command(CommandMessage {
                command_id: Uuid::now_v7(),
                action: Action::StopSession,
                session_id: Some(Uuid::now_v7()),
                payload: Value::Null,
                attempt: 2,
            }),
            ServerMessage::Ping,
            ServerMessage::Shutdown {
                reason: "replica stopping".into(),
            },
            ServerMessage::TunnelOpen(TunnelOpen {
                tunnel_id: Uuid::now_v7(),
                session_id: Uuid::now_v7(),
                token: "sst_abc".into(),
            }),
            ServerMessage::TunnelClose {
                tunnel_id: Uuid::now_v7(),
                reason: "viewer left".into(),
            },
            ServerMessage::ResultRecorded {
                command_id: Uuid::now_v7(),
            },
            ServerMessage::TransferOpen(TransferOpen {
                transfer_id: Uuid::now_v7(),
                session_id: Uuid::now_v7(),
                token: "sst_t".into(),
                direction: crate::transfer::TransferDirection::Upload,
                path: "a.txt".into(),
                max_bytes: 10,
            }),
        ];
        for msg in msgs {
            assert_eq!(decode_server_message(&encode(&msg)), Ok(msg));
        }
    }

    /// Receipts are negotiated: a peer that predates them neither sends the fields nor needs
    /// them, and one that has them says nothing when they are off.
    #[test]
    fn receipts_are_optional_on_the_wire() {
        let old_register = r#"{"v":1,"type":"register","agent_id":"a","platform":"process","version":"0.1","capacity":{"max_sessions":1}}"#;
        let Ok(AgentMessage::Register(register)) = decode_agent_message(old_register) else {
            panic!("an older agent's register still decodes");
        };
        assert!(!register.result_receipts);
        assert!(
            !register.file_transfer,
            "an older agent cannot transfer files"
        );
        let old_welcome = r#"{"v":1,"type":"welcome","accepted":true,"heartbeat_interval_secs":10,"replica_id":"r","epoch":1}"#;
        assert!(matches!(
            decode_server_message(old_welcome),
            Ok(ServerMessage::Welcome {
                result_receipts: false,
                ..
            })
        ));
        let quiet = encode(&AgentMessage::Register(Register {
            result_receipts: false,
            user_homes: false,
            file_transfer: false,
            ..register
        }));
        assert!(!quiet.contains("result_receipts"), "{quiet}");
        assert!(!quiet.contains("user_homes"), "{quiet}");
        assert!(!quiet.contains("file_transfer"), "{quiet}");
    }

    #[test]
    fn a_start_names_its_owner_only_for_a_user_home() -> Result<(), serde_json::Error> {
        let template: Template = serde_json::from_value(serde_json::json!({
            "name": "t", "command": ["xterm"], "created_at": "2026-12-01T00:00:00Z"
        }))?;
        let plain = serde_json::to_value(StartSessionPayload {
            template: template.clone(),
            user_id: None,
        })?;
        assert!(plain.get("user_id").is_none(), "{plain}");
        // What an older server sends still reads.
        let old: StartSessionPayload = serde_json::from_value(plain)?;
        assert_eq!(old.user_id, None);
        let id = Uuid::now_v7();
        let user: StartSessionPayload =
            serde_json::from_value(serde_json::to_value(StartSessionPayload {
                template,
                user_id: Some(id),
            })?)?;
        assert_eq!(user.user_id, Some(id));
        Ok(())
    }

    #[test]
    fn bad_input_is_named_precisely() {
        assert!(matches!(
            decode_agent_message("{not json"),
            Err(ProtoError::Malformed(_))
        ));
        assert_eq!(
            decode_agent_message(r#"{"v":1,"type":"teleport"}"#),
            Err(ProtoError::UnknownType("teleport".into()))
        );
        assert_eq!(
            decode_agent_message(r#"{"v":9,"type":"heartbeat"}"#),
            Err(ProtoError::UnsupportedVersion { found: 9 })
        );
        assert!(matches!(
            decode_agent_message(r#"{"v":1,"type":"ack"}"#),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            decode_agent_message(r#"[1,2,3]"#),
            Err(ProtoError::Malformed(_))
        ));
        // A server message arriving where an agent message is expected is unknown, not valid.
        assert_eq!(
            decode_agent_message(r#"{"v":1,"type":"ping"}"#),
            Err(ProtoError::UnknownType("ping".into()))
        );
        let big = format!(
            r#"{{"v":1,"type":"failed","error":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(
            decode_agent_message(&big),
            Err(ProtoError::TooBig { .. })
        ));
    }

    #[test]
    fn two_messages_in_one_frame_are_refused() {
        let one = encode(&AgentMessage::Ack {
            command_id: Uuid::now_v7(),
        });
        let two = format!("{one}{one}");
        assert!(matches!(
            decode_agent_message(&two),
            Err(ProtoError::Malformed(_))
        ));
    }

    #[test]
    fn the_command_id_of_an_undecodable_command_can_be_read() {
        let id = Uuid::now_v7();
        let unknown_action = format!(
            r#"{{"v":1,"type":"command","command_id":"{id}","action":"teleport","attempt":1}}"#
        );
        assert!(matches!(
            decode_server_message(&unknown_action),
            Err(ProtoError::Malformed(_))
        ));
        assert_eq!(command_id_of(&unknown_action), Some(id));
        let missing_attempt = format!(r#"{{"v":1,"type":"command","command_id":"{id}"}}"#);
        assert_eq!(command_id_of(&missing_attempt), Some(id));
        for unreadable in [
            "{not json".to_owned(),
            r#"{"v":1,"type":"command","command_id":"not-a-uuid"}"#.to_owned(),
            r#"{"v":1,"type":"command"}"#.to_owned(),
            format!(r#"{{"v":1,"type":"tunnel_open","command_id":"{id}"}}"#),
        ] {
            assert_eq!(command_id_of(&unreadable), None, "{unreadable}");
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics(s in ".{0,512}") {
            let _ = decode_agent_message(&s);
            let _ = decode_server_message(&s);
        }

        #[test]
        fn decoder_never_panics_on_json_like_input(
            kind in prop::sample::select(vec!["register", "heartbeat", "ack", "complete", "failed", "session_status", "x"]),
            body in "[ -~]{0,128}",
        ) {
            let text = format!(r#"{{"v":1,"type":"{kind}",{body}}}"#);
            let _ = decode_agent_message(&text);
        }
    }
}
