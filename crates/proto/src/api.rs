//! Objects of the REST API under `/api/v1`, and the status state machines.
//!
//! The JSON form of each struct here is exactly what the API returns and what
//! `streamspace … --output json` prints.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

mod identity;
mod overview;
mod quota;
mod recording;
mod rules;
mod share;
mod template;
pub use identity::{
    ApiToken, AuditFilter, AuditRecord, ChangePassword, ConfirmTotp, CreateGroup, CreateToken,
    CreateUser, CreatedToken, DeleteUserQuery, DisableTotp, Group, HomeDisposal, LoginRequest,
    LoginResponse, Me, Page, RecoveryCodes, Role, SignInProvider, TotpEnrolment, UpdateGroup,
    UpdateUser, User,
};
pub use overview::{
    OVERVIEW_MAX_HOURS, OVERVIEW_MAX_POINTS, OVERVIEW_SAMPLE_SECS, Overview, OverviewPoint,
    OverviewQuery, overview_interval_secs,
};
pub use quota::{GroupQuota, QuotaLimits, QuotaUsage, SessionSize, SetQuota, UserQuota};
pub use recording::Recording;
pub use rules::{ClipboardPolicy, EffectiveRules, RecordingPolicy, SessionRules, TransferPolicy};
pub use share::{CreateShare, MAX_SHARE_SECS, Share, ShareMode, Viewer, share_link};
pub use template::{
    DEFAULT_VNC_PORT, HomePolicy, ResourcesChange, TemplateIcon, TemplatePorts, TemplateResources,
    UpdateTemplate,
};

/// Lifecycle of a session. Terminal states (`terminated`, `failed`) never change again; a
/// session may move between `running` and `hibernated` any number of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Pending,
    Starting,
    Running,
    Hibernated,
    Terminated,
    Failed,
}

impl SessionState {
    pub const ALL: [SessionState; 6] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Hibernated,
        Self::Terminated,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Hibernated => "hibernated",
            Self::Terminated => "terminated",
            Self::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Terminated | Self::Failed)
    }

    /// Whether a session in `self` may move to `next`. Moving to the state it is already in is
    /// not a transition (callers treat it as a no-op).
    pub fn can_move_to(self, next: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, next),
            (Pending, Starting | Running | Failed | Terminated)
                | (Starting, Running | Failed | Terminated)
                | (Running, Hibernated | Failed | Terminated)
                | (Hibernated, Running | Failed | Terminated)
        )
    }

    /// Every state from which `next` may be reached: what a guarded SQL `UPDATE … WHERE state IN
    /// (…)` should list, so the database enforces the same machine as [`Self::can_move_to`].
    pub fn predecessors(next: SessionState) -> Vec<SessionState> {
        Self::ALL
            .into_iter()
            .filter(|s| s.can_move_to(next))
            .collect()
    }
}

/// Lifecycle of an agent command; status only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Pending,
    Sent,
    Acknowledged,
    Completed,
    Failed,
}

impl CommandStatus {
    pub const ALL: [CommandStatus; 5] = [
        Self::Pending,
        Self::Sent,
        Self::Acknowledged,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Acknowledged => "acknowledged",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }

    fn rank(self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Sent => 1,
            Self::Acknowledged => 2,
            Self::Completed | Self::Failed => 3,
        }
    }

    /// Forward-only: a late `ack` never overwrites `completed`. `sent → sent` is allowed because
    /// a resend is a new attempt of the same status.
    pub fn can_move_to(self, next: CommandStatus) -> bool {
        if self.is_terminal() {
            return false;
        }
        next.rank() > self.rank() || (self == Self::Sent && next == Self::Sent)
    }

    pub fn predecessors(next: CommandStatus) -> Vec<CommandStatus> {
        Self::ALL
            .into_iter()
            .filter(|s| s.can_move_to(next))
            .collect()
    }
}

/// What a command asks an agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    StartSession,
    StopSession,
    HibernateSession,
    WakeSession,
    /// Answered by the agent at once (`{"pong": true}`), with no session: checks the whole
    /// command path to one agent cheaply.
    Ping,
    /// Removes a deleted user's home from the agent that holds it (no session); sent only to
    /// agents that registered with `user_homes`.
    DeleteUserHome,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StartSession => "start_session",
            Self::StopSession => "stop_session",
            Self::HibernateSession => "hibernate_session",
            Self::WakeSession => "wake_session",
            Self::Ping => "ping",
            Self::DeleteUserHome => "delete_user_home",
        }
    }

    /// The session state a successful command of this kind leaves behind (`None` for actions
    /// that touch no session).
    pub fn resulting_state(self) -> Option<SessionState> {
        match self {
            Self::StartSession | Self::WakeSession => Some(SessionState::Running),
            Self::StopSession => Some(SessionState::Terminated),
            Self::HibernateSession => Some(SessionState::Hibernated),
            Self::Ping | Self::DeleteUserHome => None,
        }
    }
}

macro_rules! str_enum_impls {
    ($ty:ty, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                serde_json::from_value(Value::String(s.to_owned())).map_err(|_| UnknownValue {
                    what: $what,
                    value: s.to_owned(),
                })
            }
        }
    };
}

str_enum_impls!(SessionState, "session state");
str_enum_impls!(CommandStatus, "command status");
str_enum_impls!(Action, "action");
str_enum_impls!(AgentStatus, "agent status");
str_enum_impls!(ShareMode, "share mode");

/// A string that names no known value of an enum (e.g. a status read back from the database).
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// A user's desktop session, running on one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub id: Uuid,
    /// Name of the template it was created from.
    pub template: String,
    /// The agent it was placed on; `None` only if it failed before placement.
    pub agent_id: Option<String>,
    pub state: SessionState,
    /// Address of the session's VNC server as the agent sees it (e.g. `127.0.0.1:5901`).
    pub vnc_address: Option<String>,
    /// Why the session failed, when it did.
    pub error_message: Option<String>,
    /// Username of the session's owner.
    pub owner: String,
    /// Id of the owner; `None` once that user is deleted (the session stays, for the record).
    #[serde(default)]
    pub owner_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub template: String,
}

/// Filter for `GET /api/v1/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct SessionFilter {
    /// Only sessions placed on this agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only sessions of this user (a username). Users always see only their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Sessions per page: default 100, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the previous page ended (its `next_cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Paging of a listing without filters: `?limit=&cursor=`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page: default 100, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the previous page ended (its `next_cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One row of `agent_commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Command {
    pub id: i64,
    pub command_id: Uuid,
    pub agent_id: String,
    pub session_id: Option<Uuid>,
    pub action: Action,
    pub payload: Value,
    pub status: CommandStatus,
    pub result: Option<Value>,
    pub error_message: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Query of `GET /api/v1/commands/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct CommandWait {
    /// Answer as soon as the command is `completed` or `failed`, or after this many seconds
    /// (0 < wait ≤ [`MAX_COMMAND_WAIT_SECS`]) with the command as it is then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<f64>,
}

/// Longest `wait` a command read may ask for.
pub const MAX_COMMAND_WAIT_SECS: f64 = 60.0;

/// Filter for `GET /api/v1/commands`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct CommandFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<CommandStatus>,
    /// Commands per page: default 100, at most 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the previous page ended (its `next_cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Online,
    Offline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// An agent as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    pub agent_id: String,
    /// Runtime the agent drives: `process`, `docker` or `kubernetes`.
    pub platform: String,
    pub status: AgentStatus,
    pub labels: BTreeMap<String, String>,
    /// Most sessions the agent accepts (0 = none).
    pub max_sessions: i32,
    /// Non-terminal sessions placed on the agent.
    pub active_sessions: i32,
    /// Bumped on every registration; fences stale connections.
    pub epoch: i64,
    /// Replica holding the agent's connection while online.
    pub replica_id: Option<String>,
    pub version: Option<String>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A session template: what to run inside a session. Fields with a default are read leniently
/// (rows from older servers) but always sent, so the API document marks them required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Template {
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub description: String,
    /// Program and arguments started on the session's display (process runtime); for
    /// container runtimes, replaces the image's command when not empty.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub command: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub env: BTreeMap<String, String>,
    /// Container image (`docker` and `kubernetes` runtimes; they refuse a template without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub ports: TemplatePorts,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub resources: TemplateResources,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub persistent_home: HomePolicy,
    /// Hibernate the session after this many seconds without a viewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u32>,
    /// Groups whose members may launch it; empty means every user may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    /// The catalog heading it is listed under (none: "Other").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Words the catalog's search matches besides the name and description.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<TemplateIcon>,
    /// Clipboard, file transfer and recording rules for its sessions (copied into each session
    /// when it is created).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub rules: SessionRules,
    pub created_at: DateTime<Utc>,
}

/// `POST /api/v1/templates`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTemplate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Required unless `image` is given.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "TemplatePorts::is_default")]
    pub ports: TemplatePorts,
    #[serde(default, skip_serializing_if = "TemplateResources::is_empty")]
    pub resources: TemplateResources,
    #[serde(default, skip_serializing_if = "HomePolicy::is_none")]
    pub persistent_home: HomePolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u32>,
    /// Groups whose members may launch it; empty means every user may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    /// The catalog heading (1-40 characters, no control characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// At most 10 tags of 1-32 characters of a-z 0-9 and '-'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<TemplateIcon>,
    /// Clipboard, file transfer and recording rules for its sessions.
    #[serde(default, skip_serializing_if = "SessionRules::is_empty")]
    pub rules: SessionRules,
}

/// An agent key as listed (never includes the secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentKey {
    pub id: Uuid,
    pub agent_id: String,
    /// First characters of the secret, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/agent-keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAgentKey {
    pub agent_id: String,
}

/// Answer to `POST /api/v1/agent-keys`: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedAgentKey {
    #[serde(flatten)]
    pub key: AgentKey,
    pub secret: String,
}

/// Body of every API error: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable (`not_found`, `no_capacity`, …).
    pub code: String,
    /// For the person reading it.
    pub message: String,
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    pub ready: bool,
    pub database: String,
    pub replica_id: String,
    /// `"ok"` or `"degraded"` in Redis mode (absent without Redis). A degraded Redis leaves the
    /// replica ready: it serves its own agents from the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_session_states_never_move() {
        for s in SessionState::ALL {
            assert!(!SessionState::Terminated.can_move_to(s));
            assert!(!SessionState::Failed.can_move_to(s));
        }
    }

    #[test]
    fn command_status_only_moves_forward() {
        use CommandStatus::*;
        assert!(
            !Completed.can_move_to(Acknowledged),
            "late ack must not reopen"
        );
        assert!(!Acknowledged.can_move_to(Sent));
        assert!(Sent.can_move_to(Sent), "a resend keeps the row in sent");
        assert!(Pending.can_move_to(Failed));
        assert_eq!(
            CommandStatus::predecessors(Acknowledged),
            vec![Pending, Sent]
        );
    }

    #[test]
    fn enums_round_trip_through_strings() {
        for s in SessionState::ALL {
            assert_eq!(s.as_str().parse::<SessionState>().ok(), Some(s));
        }
        for s in CommandStatus::ALL {
            assert_eq!(s.as_str().parse::<CommandStatus>().ok(), Some(s));
        }
        assert!("bogus".parse::<Action>().is_err());
    }
}
