//! Rows as both backends read them, and their conversion to the API types.
//!
//! The two schemas differ only in column types (native `uuid`/`timestamptz`/`jsonb` on
//! PostgreSQL, `TEXT` on SQLite), and sqlx decodes both into the same Rust types, except for
//! ids: [`DbUuid`] bridges that gap, so one row struct and one conversion serve both backends.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::types::Json;
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use streamspace_proto::api::{
    Agent, AgentStatus, ApiToken, AuditRecord, Command, Group, Session, Template, User,
};
use uuid::Uuid;

use crate::identity::UserRecord;
use crate::{ApiKeyKind, ApiKeyRecord, Result, StoreError};

/// A UUID column: native `uuid` on PostgreSQL, hyphenated `TEXT` on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DbUuid(pub Uuid);

impl From<Uuid> for DbUuid {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl Type<Postgres> for DbUuid {
    fn type_info() -> PgTypeInfo {
        <Uuid as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for DbUuid {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Uuid as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbUuid {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<Uuid as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for DbUuid {
    fn type_info() -> SqliteTypeInfo {
        <uuid::fmt::Hyphenated as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for DbUuid {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <uuid::fmt::Hyphenated as Encode<Sqlite>>::encode_by_ref(&self.0.hyphenated(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbUuid {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(
            <uuid::fmt::Hyphenated as Decode<Sqlite>>::decode(value)?.into_uuid(),
        ))
    }
}

fn parse<T: FromStr<Err = streamspace_proto::api::UnknownValue>>(s: &str) -> Result<T> {
    s.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// One `agent_commands` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CommandRow {
    id: i64,
    command_id: DbUuid,
    agent_id: String,
    session_id: Option<DbUuid>,
    action: String,
    payload: Json<Value>,
    status: String,
    result: Option<Json<Value>>,
    error_message: Option<String>,
    attempts: i32,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    acknowledged_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<CommandRow> for Command {
    type Error = StoreError;
    fn try_from(r: CommandRow) -> Result<Self> {
        Ok(Command {
            id: r.id,
            command_id: r.command_id.0,
            agent_id: r.agent_id,
            session_id: r.session_id.map(|s| s.0),
            action: parse(&r.action)?,
            payload: r.payload.0,
            status: parse(&r.status)?,
            result: r.result.map(|j| j.0),
            error_message: r.error_message,
            attempts: r.attempts,
            created_at: r.created_at,
            sent_at: r.sent_at,
            acknowledged_at: r.acknowledged_at,
            completed_at: r.completed_at,
            updated_at: r.updated_at,
        })
    }
}

/// One `sessions` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: DbUuid,
    template: String,
    agent_id: Option<String>,
    state: String,
    vnc_address: Option<String>,
    error_message: Option<String>,
    owner: String,
    owner_id: Option<DbUuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SessionRow> for Session {
    type Error = StoreError;
    fn try_from(r: SessionRow) -> Result<Self> {
        Ok(Session {
            id: r.id.0,
            template: r.template,
            agent_id: r.agent_id,
            state: parse(&r.state)?,
            vnc_address: r.vnc_address,
            error_message: r.error_message,
            owner: r.owner,
            owner_id: r.owner_id.map(|u| u.0),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// One `agents` row with its count of non-terminal sessions.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AgentRow {
    agent_id: String,
    platform: String,
    status: String,
    labels: Json<Value>,
    max_sessions: i32,
    active_sessions: i64,
    epoch: i64,
    replica_id: Option<String>,
    version: Option<String>,
    last_heartbeat_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> Result<Self> {
        let status = match r.status.as_str() {
            "online" => AgentStatus::Online,
            "offline" => AgentStatus::Offline,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown agent status {other:?}"
                )));
            }
        };
        Ok(Agent {
            agent_id: r.agent_id,
            platform: r.platform,
            status,
            labels: from_json::<BTreeMap<String, String>>("agent labels", r.labels.0)?,
            max_sessions: r.max_sessions,
            active_sessions: i32::try_from(r.active_sessions).unwrap_or(i32::MAX),
            epoch: r.epoch,
            replica_id: r.replica_id,
            version: r.version,
            last_heartbeat_at: r.last_heartbeat_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// One `templates` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TemplateRow {
    name: String,
    description: String,
    command: Json<Value>,
    env: Json<Value>,
    image: Option<String>,
    vnc_port: i32,
    cpu_millis: Option<i64>,
    memory_mib: Option<i64>,
    persistent_home: String,
    idle_timeout_secs: Option<i64>,
    allowed_groups: Json<Value>,
    category: Option<String>,
    tags: Json<Value>,
    icon: Option<String>,
    rules: Json<Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<TemplateRow> for Template {
    type Error = StoreError;
    fn try_from(r: TemplateRow) -> Result<Self> {
        Ok(Template {
            name: r.name,
            description: r.description,
            command: from_json("template command", r.command.0)?,
            env: from_json("template env", r.env.0)?,
            image: r.image,
            ports: streamspace_proto::api::TemplatePorts {
                vnc: int_column("templates.vnc_port", r.vnc_port)?,
            },
            resources: streamspace_proto::api::TemplateResources {
                cpu_millis: r
                    .cpu_millis
                    .map(|v| int_column("templates.cpu_millis", v))
                    .transpose()?,
                memory_mib: r
                    .memory_mib
                    .map(|v| int_column("templates.memory_mib", v))
                    .transpose()?,
            },
            persistent_home: r.persistent_home.parse().map_err(StoreError::Corrupt)?,
            idle_timeout_secs: r
                .idle_timeout_secs
                .map(|v| int_column("templates.idle_timeout_secs", v))
                .transpose()?,
            allowed_groups: from_json("template allowed_groups", r.allowed_groups.0)?,
            category: r.category,
            tags: from_json("template tags", r.tags.0)?,
            icon: r
                .icon
                .map(|i| i.parse().map_err(StoreError::Corrupt))
                .transpose()?,
            rules: from_json("template rules", r.rules.0)?,
            created_at: r.created_at,
        })
    }
}

/// One `users` row (its groups are read separately).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: DbUuid,
    username: String,
    display_name: String,
    email: Option<String>,
    role: String,
    disabled: bool,
    password_hash: Option<String>,
    totp_secret: Option<String>,
    totp_enabled: bool,
    totp_last_step: Option<i64>,
    last_login_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl UserRow {
    /// The record, with the user's group names.
    pub fn into_record(self, groups: Vec<String>) -> Result<UserRecord> {
        Ok(UserRecord {
            user: User {
                id: self.id.0,
                username: self.username,
                display_name: self.display_name,
                email: self.email,
                role: parse(&self.role)?,
                disabled: self.disabled,
                groups,
                has_password: self.password_hash.is_some(),
                totp_enabled: self.totp_enabled,
                last_login_at: self.last_login_at,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            password_hash: self.password_hash,
            totp_secret: self.totp_secret,
            totp_last_step: self.totp_last_step,
        })
    }
}

/// One `groups` row (its members are read separately).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GroupRow {
    pub id: DbUuid,
    name: String,
    description: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl GroupRow {
    pub fn into_group(self, members: Vec<String>) -> Group {
        Group {
            id: self.id.0,
            name: self.name,
            description: self.description,
            members,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// One `audit_log` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    actor_id: Option<DbUuid>,
    action: String,
    target: String,
    detail: Json<Value>,
    client_addr: Option<String>,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        AuditRecord {
            id: r.id,
            at: r.at,
            actor: r.actor,
            actor_id: r.actor_id.map(|u| u.0),
            action: r.action,
            target: r.target,
            detail: r.detail.0,
            client_addr: r.client_addr,
        }
    }
}

/// A personal token as listed, with its owner's username.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: DbUuid,
    name: String,
    username: String,
    prefix: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id.0,
            name: r.name,
            user: r.username,
            prefix: r.prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
        }
    }
}

/// One `api_keys` row (without the hash, which is never read back).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: DbUuid,
    kind: String,
    agent_id: Option<String>,
    user_id: Option<DbUuid>,
    name: String,
    prefix: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// An `api_keys` row with the hash it was found by (batched lookups).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FoundKeyRow {
    pub key_hash: String,
    #[sqlx(flatten)]
    pub key: ApiKeyRow,
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> Result<Self> {
        let kind = ApiKeyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == r.kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown api key kind {:?}", r.kind)))?;
        Ok(ApiKeyRecord {
            id: r.id.0,
            kind,
            agent_id: r.agent_id,
            user_id: r.user_id.map(|u| u.0),
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

/// Converts every row, failing on the first corrupt one.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// An integer column narrowed to the type the API uses; out of range means a corrupt row.
fn int_column<T: TryFrom<i64>>(what: &str, v: impl Into<i64>) -> Result<T> {
    let v = v.into();
    T::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} = {v} is out of range")))
}

/// One `recordings` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RecordingRow {
    id: DbUuid,
    session_id: DbUuid,
    owner_id: Option<DbUuid>,
    viewer_id: DbUuid,
    viewer: String,
    started_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
    bytes: i64,
    storage_key: String,
    complete: bool,
}

impl TryFrom<RecordingRow> for crate::recording::StoredRecording {
    type Error = StoreError;
    fn try_from(r: RecordingRow) -> Result<Self> {
        Ok(Self {
            recording: streamspace_proto::api::Recording {
                id: r.id.0,
                session_id: r.session_id.0,
                owner_id: r.owner_id.map(|u| u.0),
                viewer_id: r.viewer_id.0,
                viewer: r.viewer,
                started_at: r.started_at,
                ended_at: r.ended_at,
                bytes: u64::try_from(r.bytes)
                    .map_err(|_| StoreError::Corrupt(format!("recording size {}", r.bytes)))?,
                complete: r.complete,
            },
            storage_key: r.storage_key,
        })
    }
}

/// One `session_shares` row, with its maker's username.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ShareRow {
    id: DbUuid,
    session_id: DbUuid,
    created_by: Option<String>,
    mode: String,
    allowed_users: Json<Value>,
    allowed_groups: Json<Value>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ShareRow> for streamspace_proto::api::Share {
    type Error = StoreError;
    fn try_from(r: ShareRow) -> Result<Self> {
        Ok(Self {
            id: r.id.0,
            session_id: r.session_id.0,
            created_by: r.created_by,
            mode: parse(&r.mode)?,
            users: from_json("share users", r.allowed_users.0)?,
            groups: from_json("share groups", r.allowed_groups.0)?,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
            link: streamspace_proto::api::share_link(r.id.0),
        })
    }
}
