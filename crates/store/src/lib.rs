//! Persistence for the StreamSpace control plane.
//!
//! The server talks to the database only through the [`Store`] trait: one method per thing the
//! control plane needs to do, each a single statement or a single transaction, so that every
//! invariant the design depends on (forward-only status changes, capacity checks, epoch fencing)
//! is enforced by the database rather than by the caller. Two backends implement it:
//! [`postgres::PgStore`] for production and [`sqlite::SqliteStore`] for `streamspace up` and small
//! installs. Each owns a numbered, reversible migration folder; [`open`] picks the backend from the
//! URL. One conformance suite (`tests/conformance.rs`) runs against both.
//!
//! Timestamps are always taken from the database clock (never bound from the application), and
//! `updated_at` is maintained by triggers, never by application code.
//!
//! # Audit
//!
//! The audit log is written in the same transaction as the change it records. Every method that
//! changes something on someone's behalf (users, groups, quotas, templates, agents, credentials,
//! sessions) takes the [`AuditEntry`] describing it as its last argument and inserts it inside
//! its own transaction: if the entry cannot be written, the change is rolled back and the method
//! fails. A caller cannot make such a change without saying who made it. Some facts only the
//! transaction knows are added to the entry's `detail` by the store (each method says which).
//! Writes the control plane makes on its own account (agent registration and heartbeats, command
//! delivery and results, session state reports, last-used and last-sign-in times, one-time-code
//! steps, pings) take no entry. [`Store::audit_event`] writes an entry alone, for events that
//! change nothing (a failed sign-in, a viewer token issued).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use streamspace_proto::api::{
    Action, Agent, AgentKey, Command, CommandFilter, CreateTemplate, Session, SessionState,
    Template, UpdateTemplate,
};
use uuid::Uuid;

mod common;
mod home;
pub mod identity;
pub mod migrate;
pub mod postgres;
pub mod quota;
pub mod recording;
mod redact;
mod rows;
pub mod rules;
pub mod shares;
mod sql;
pub mod sqlite;
pub mod sso;
pub mod stats;

pub use identity::{
    AuditQuery, BOOTSTRAP_ADMIN_ID, Identity, NewGroup, NewUser, UserChange, UserRecord,
};
pub use migrate::{MigrationState, MigrationStatus};
pub use quota::{QuotaDimension, QuotaSources, Quotas, SessionSize};
pub use recording::{NewRecording, Recordings, StoredRecording};
pub use redact::{REDACTED, redact_url};
pub use rules::Rules;
pub use shares::{NewShare, Shares};
pub use sso::{NewOidcFlow, OidcFlow, OidcSignIn, SingleSignOn};
pub use stats::{LiveCounts, Stats};

/// `last_used_at` of a credential is kept to this many seconds: a lookup writes it only when
/// it is older, so busy keys do not turn every request into a write of the same row.
pub const KEY_USE_RESOLUTION_SECS: i64 = 60;

/// What can go wrong in the store, in the control plane's terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{0}")]
    Conflict(String),
    #[error("no online agent has free capacity for a new session")]
    NoCapacity,
    /// The session needs its owner's home, which lives on `agent_id`, and that agent cannot
    /// take it now (`reason`: it is offline, or full).
    #[error(
        "your home directory lives on agent {agent_id:?}, which {reason}; sessions that use \
         it run only there (unless the operator made user homes shared storage)"
    )]
    HomeAgentUnavailable {
        agent_id: String,
        reason: &'static str,
    },
    /// The session needs its owner's home, which another live session of theirs already
    /// mounts, and the home is not shared storage (a ReadWriteOnce volume).
    #[error(
        "your home directory is in use by session {session_id}; stop or end that session \
         first (a user's home is mounted by one session at a time)"
    )]
    HomeInUse { session_id: Uuid },
    /// No online agent with room keeps user homes (they all predate them, or are full).
    #[error(
        "no online agent with free capacity keeps user homes (persistent_home: user needs \
         agents that support it)"
    )]
    NoUserHomeAgent,
    /// The user has a home on `agent_id` and the deletion did not say what to do with it.
    #[error(
        "the user has a home directory on agent {agent_id:?}: say whether to keep or delete \
         it (home=keep or home=delete)"
    )]
    HomeChoiceNeeded { agent_id: String },
    /// Creating the session would take its owner past a quota.
    #[error(
        "quota exceeded: {dimension} is {limit} {unit}; {used} in use and this session needs \
         {needed} more",
        unit = dimension.unit()
    )]
    QuotaExceeded {
        dimension: QuotaDimension,
        limit: u64,
        used: u64,
        needed: u64,
    },
    /// The URL is kept with its password hidden ([`redact_url`]): this error is printed.
    #[error("unsupported database URL {0:?} (expected postgres://… or sqlite:…)")]
    UnsupportedUrl(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A change the caller's check refused (see [`Store::update_template`]); the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The database failed; sqlx's own message says how (it is this error's message).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything needed to register (or re-register) an agent connection.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRegistration {
    pub agent_id: String,
    pub platform: String,
    pub version: String,
    pub max_sessions: i32,
    pub labels: BTreeMap<String, String>,
    pub replica_id: String,
    /// The agent's runtime keeps user homes (it said so in `register`).
    pub user_homes: bool,
}

/// One agent connection's heartbeat, for [`Store::heartbeat_agents`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHeartbeat {
    pub agent_id: String,
    /// The epoch the connection registered at.
    pub epoch: i64,
    /// The capacity it reports.
    pub max_sessions: i32,
    /// The replica holding the connection.
    pub replica_id: String,
    /// The key the agent connected with, which must still be valid.
    pub key_id: Uuid,
}

/// What a heartbeat came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// Recorded: the connection is the agent's current one.
    Recorded,
    /// Not recorded: a newer registration of the agent happened.
    Replaced,
    /// Not recorded: the key is revoked, expired or deleted.
    KeyGone,
}

/// How a new session uses its owner's home (`persistent_home: user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserHomeUse {
    /// Every agent sees the same home storage, which many sessions may mount at once
    /// (`--shared-user-homes`): any agent with user homes may run the session, and the
    /// owner's other sessions do not matter. Otherwise the session goes to the agent that
    /// holds the home, and is refused while another session of the owner uses it.
    pub shared: bool,
}

/// What deleting a user does with their home (see [`identity::Identity::delete_user_and_home`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeChoice {
    /// No choice made: refused (`HomeChoiceNeeded`) if the user has a home.
    Ask,
    /// Leave the home where it is; its record stays, marked orphaned, for an operator.
    Keep,
    /// Remove it: queue a `delete_user_home` command (this id) for the agent that holds it.
    Delete { command_id: Uuid },
}

/// A stored credential (admin token, agent key, personal token or browser session); only its
/// keyed hash is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub kind: ApiKeyKind,
    /// For agent keys: the only agent id this key may register as.
    pub agent_id: Option<String>,
    /// For every other kind: the user it acts as.
    pub user_id: Option<Uuid>,
    /// A name its owner gave it (personal tokens).
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ApiKeyKind {
    /// The bootstrap admin token (`STREAMSPACE_ADMIN_TOKEN`), which acts as the admin user.
    Admin,
    Agent,
    /// A user's personal API token.
    User,
    /// A signed-in browser's session (the cookie's secret).
    #[default]
    Browser,
}

impl ApiKeyKind {
    pub const ALL: [ApiKeyKind; 4] = [Self::Admin, Self::Agent, Self::User, Self::Browser];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
            Self::User => "user",
            Self::Browser => "browser",
        }
    }
}

impl ApiKeyRecord {
    pub fn to_agent_key(&self) -> Option<AgentKey> {
        Some(AgentKey {
            id: self.id,
            agent_id: self.agent_id.clone()?,
            prefix: self.prefix.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// A new credential to store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewApiKey {
    pub id: Uuid,
    pub kind: ApiKeyKind,
    pub agent_id: Option<String>,
    pub user_id: Option<Uuid>,
    pub name: String,
    /// Lifetime from now (the database's clock); `None`: until revoked.
    pub expires_in_secs: Option<f64>,
    pub prefix: String,
    /// Keyed hash (HMAC) of the secret, hex.
    pub key_hash: String,
}

/// A new command row, created `pending` for the dispatcher to claim and send.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    pub command_id: Uuid,
    pub agent_id: String,
    pub session_id: Option<Uuid>,
    pub action: Action,
    pub payload: Value,
    /// Insert the command already claimed — `sent`, attempt 1 — unless its agent has a
    /// command the dispatcher would claim now: a `pending` one, or a `sent` one due again under
    /// these resend settings (the new command then waits its turn, `pending`). Only for a
    /// caller that holds the agent's delivery turn on the replica the agent is connected to, and
    /// sends the command itself when the row comes back `sent`: the dispatcher's claim (a
    /// statement and a wake-up) is saved, and no command overtakes one that is due before it.
    pub send_now: Option<SendNow>,
}

/// The resend settings a command claimed in its insert is checked against (see
/// [`NewCommand::send_now`]): those of the replica's dispatcher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendNow {
    /// Seconds before an unacknowledged command is sent again (doubling with each attempt).
    pub ack_timeout_secs: f64,
    /// Attempts after which a command is no longer sent again.
    pub max_attempts: i32,
}

/// A session to create together with its `start_session` command.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub id: Uuid,
    pub template: String,
    /// Username of the owner (shown in listings).
    pub owner: String,
    pub owner_id: Uuid,
    /// Used as the command's `command_id`.
    pub command_id: Uuid,
    /// Built once the agent is chosen (it may embed the template).
    pub payload: Value,
    /// Only agents of this platform, when set.
    pub platform: Option<String>,
    /// The limits that apply to the owner, checked in the creating transaction
    /// (`QuotaLimits::default()`: unlimited, no check).
    pub quota: streamspace_proto::api::QuotaLimits,
    /// What this session counts against the quota.
    pub size: SessionSize,
    /// What a session counts whose template sets no CPU or memory (or no longer exists).
    pub default_size: SessionSize,
    /// Set when the session mounts its owner's home.
    pub user_home: Option<UserHomeUse>,
}

/// An agent's report on one of its commands, to record with [`Store::finish_commands`].
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReport {
    pub agent_id: String,
    pub command_id: Uuid,
    pub outcome: CommandOutcome,
}

/// Outcome of an agent's report on a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    Completed(Value),
    Failed(String),
}

impl CommandOutcome {
    /// `(status, result, error_message)` as the row stores them.
    pub(crate) fn columns(
        &self,
    ) -> (
        &'static str,
        Option<sqlx::types::Json<&Value>>,
        Option<&str>,
    ) {
        match self {
            Self::Completed(v) => ("completed", Some(sqlx::types::Json(v)), None),
            Self::Failed(e) => ("failed", None, Some(e.as_str())),
        }
    }
}

/// One audit record: who did what to which target, from where. See the crate's "Audit"
/// section for when it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Who, in words (`user:alice`, `agent:edge-1`).
    pub actor: String,
    /// The acting user, when it is one.
    pub actor_id: Option<Uuid>,
    /// The client's address as the server determined it.
    pub client_addr: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: Value,
}

impl AuditEntry {
    /// A change the control plane makes by itself (first-start setup, `streamspace up`): the
    /// actor is `system`.
    pub fn system(action: &str, target: impl Into<String>, detail: Value) -> Self {
        Self {
            actor: "system".into(),
            actor_id: None,
            client_addr: None,
            action: action.to_owned(),
            target: target.into(),
            detail,
        }
    }

    /// This entry with `key` set to `value` in its detail (made an object if it is not one).
    pub(crate) fn with_detail(&self, key: &str, value: Value) -> Self {
        let mut entry = self.clone();
        if !entry.detail.is_object() {
            entry.detail = Value::Object(serde_json::Map::new());
        }
        if let Value::Object(map) = &mut entry.detail {
            map.insert(key.to_owned(), value);
        }
        entry
    }
}

/// What a changed template must pass before it is stored (the API's validation of a new one);
/// `Err` carries the message to answer with.
pub type TemplateCheck = dyn Fn(&CreateTemplate) -> std::result::Result<(), String> + Send + Sync;

/// `audit` with its detail's `expires_at` field, if it has one, set to `key`'s expiry.
pub(crate) fn with_expiry(audit: &AuditEntry, key: &ApiKeyRecord) -> AuditEntry {
    match audit.detail.get("expires_at") {
        Some(_) => audit.with_detail("expires_at", serde_json::json!(key.expires_at)),
        None => audit.clone(),
    }
}

/// Persistence for the control plane. All methods are safe to call from several replicas at once.
#[async_trait]
pub trait Store:
    Identity + Quotas + Rules + SingleSignOn + Recordings + Shares + Stats + 'static
{
    /// Backend name (`postgres` or `sqlite`), for logs and `/readyz`.
    fn backend(&self) -> &'static str;

    /// Cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<()>;

    // --- settings -------------------------------------------------------------------------

    /// Returns the stored value for `key`, or stores `value` if there is none yet and returns it.
    /// Used for the master secret every purpose's key is derived from (unless it is kept in a
    /// file): the first replica to start wins, every other one reads the same secret.
    async fn setting_get_or_init(&self, key: &str, value: &str) -> Result<String>;

    // --- api keys -------------------------------------------------------------------------

    /// Stores the key and writes `audit`; if the entry's detail has an `expires_at` field, it is
    /// set to the key's expiry (which the database clock decides).
    async fn create_api_key(&self, key: NewApiKey, audit: &AuditEntry) -> Result<ApiKeyRecord>;
    /// Looks up a key that is neither revoked nor expired by its keyed hash and records its use, to the
    /// [`KEY_USE_RESOLUTION_SECS`]: `last_used_at` is written only when older than that.
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;
    /// [`Store::find_api_key`] for several hashes at once — one lookup and at most one
    /// `last_used_at` update on PostgreSQL: the answers in the order of `key_hashes`.
    async fn find_api_keys(&self, key_hashes: &[String]) -> Result<Vec<Option<ApiKeyRecord>>>;
    async fn list_api_keys(&self, kind: ApiKeyKind) -> Result<Vec<ApiKeyRecord>>;
    /// Marks a key revoked; `NotFound` if no such key.
    async fn revoke_api_key(&self, id: Uuid, audit: &AuditEntry) -> Result<()>;
    /// A key by id, revoked or not; `NotFound` if there is none.
    async fn get_api_key(&self, id: Uuid) -> Result<ApiKeyRecord>;
    /// Whether a key with this keyed hash was stored and revoked (so the configured admin
    /// token can be refused with a clear message rather than a uniqueness conflict).
    async fn is_key_revoked(&self, key_hash: &str) -> Result<bool>;
    /// Whether any admin credential exists (so the first start knows to create one).
    async fn has_admin_key(&self) -> Result<bool>;
    /// Replaces the keyed hash of key `id` from `old_hash` to `new_hash` (the same key hashed
    /// under a newer key, after it was found by its old hash); false if its hash is no longer
    /// `old_hash`.
    async fn rehash_api_key(&self, id: Uuid, old_hash: &str, new_hash: &str) -> Result<bool>;

    // --- templates ------------------------------------------------------------------------

    /// `Conflict` if a template of that name exists.
    async fn create_template(
        &self,
        template: &streamspace_proto::api::CreateTemplate,
        audit: &AuditEntry,
    ) -> Result<Template>;
    async fn get_template(&self, name: &str) -> Result<Template>;
    async fn list_templates(&self) -> Result<Vec<Template>>;
    async fn delete_template(&self, name: &str, audit: &AuditEntry) -> Result<()>;
    /// In one transaction: reads the template under a lock (`NotFound` if there is none),
    /// applies `change`, asks `check` whether the result is acceptable (`Invalid` with its
    /// message if not), stores it and writes `audit`. Returns the template after the change.
    async fn update_template(
        &self,
        name: &str,
        change: &UpdateTemplate,
        check: &TemplateCheck,
        audit: &AuditEntry,
    ) -> Result<Template>;

    // --- agents ---------------------------------------------------------------------------

    /// Creates or updates the agent, marks it online on `replica_id`, bumps and returns its epoch.
    async fn register_agent(&self, reg: &AgentRegistration) -> Result<i64>;
    /// [`Store::register_agent`] for several connections at once — one statement on
    /// PostgreSQL, so that a storm of reconnecting agents costs a round trip per batch rather
    /// than per agent. Returns the epochs in the order of `regs`; an agent named twice is
    /// registered twice, in that order (the later one holding the newer epoch).
    async fn register_agents(&self, regs: &[AgentRegistration]) -> Result<Vec<i64>>;
    /// Records heartbeats (and the capacities they report), each for the connection with its
    /// `epoch`, held by its `replica_id`, if the key its agent connected with is still valid
    /// (not revoked, expired or deleted) and the connection is still current (no newer
    /// registration happened); answers each in the order of `beats`. A recorded heartbeat puts
    /// the agent online on its replica even if a sweep marked it offline meanwhile: a sweep on
    /// another replica cannot close the connection, and under load a heartbeat can be recorded
    /// after the liveness timeout. One statement on PostgreSQL, so that ten thousand agents
    /// heartbeating cost a round trip per batch rather than two per heartbeat.
    async fn heartbeat_agents(&self, beats: &[AgentHeartbeat]) -> Result<Vec<HeartbeatOutcome>>;
    /// Marks the agent offline only if `epoch` is still its current one (a stale connection's
    /// cleanup never marks the newer connection's agent offline).
    async fn agent_disconnected(&self, agent_id: &str, epoch: i64) -> Result<bool>;
    /// Marks offline every online agent whose last heartbeat is older than `older_than_secs`;
    /// returns their ids.
    async fn expire_agents(&self, older_than_secs: f64) -> Result<Vec<String>>;
    async fn get_agent(&self, agent_id: &str) -> Result<Agent>;
    /// Agents in the order of their ids: at most `limit`, those after `after` (a page of a
    /// listing that may hold ten thousand).
    async fn list_agents(&self, after: Option<&str>, limit: i64) -> Result<Vec<Agent>>;
    /// Removes the agent and revokes its keys; `Conflict` while it has non-terminal sessions.
    async fn delete_agent(&self, agent_id: &str, audit: &AuditEntry) -> Result<()>;

    // --- sessions -------------------------------------------------------------------------

    /// In one transaction: check the owner's quota under a lock on the owner's row
    /// (`QuotaExceeded` naming the first dimension it would overshoot), choose the least-loaded
    /// online agent with free capacity (`NoCapacity` if none), insert the session (`pending`)
    /// and its `start_session` command (`pending`), and `audit` with the chosen `agent_id` added
    /// to its detail.
    ///
    /// With [`NewSession::user_home`], only agents with user homes qualify, and unless the
    /// homes are shared: the owner's other live session using the home refuses it
    /// (`HomeInUse`, checked under the owner's lock), and an owner whose home exists gets
    /// the agent that holds it or `HomeAgentUnavailable`. The first such session records
    /// where the home is made.
    async fn create_session(
        &self,
        new: &NewSession,
        audit: &AuditEntry,
    ) -> Result<(Session, Command)>;
    async fn get_session(&self, id: Uuid) -> Result<Session>;
    /// Newest first (by id, which is time-ordered), as [`SessionQuery`] narrows them.
    async fn list_sessions(&self, query: &SessionQuery<'_>) -> Result<Vec<Session>>;
    /// Moves a session to `state` if the state machine allows it from the current state
    /// (guarded in SQL). Returns the session after the call and whether it changed.
    /// `vnc_address` and `error_message` are set when given.
    async fn set_session_state(
        &self,
        id: Uuid,
        state: SessionState,
        vnc_address: Option<&str>,
        error_message: Option<&str>,
    ) -> Result<(Session, bool)>;
    /// In one transaction: check the session exists, is not terminal and is in one of
    /// `allowed_from` (else `Conflict` naming the current state), then insert the command.
    async fn create_session_command(
        &self,
        session_id: Uuid,
        allowed_from: &[SessionState],
        command: &NewCommand,
        audit: &AuditEntry,
    ) -> Result<Command>;

    // --- commands -------------------------------------------------------------------------

    /// Inserts a `pending` command that belongs to no session (e.g. `ping`); `NotFound` if the
    /// agent does not exist, `Conflict` if the command id is taken.
    async fn create_command(&self, command: &NewCommand) -> Result<Command>;
    /// [`Store::create_command`] for several commands at once, answering each in the order
    /// given: one statement on PostgreSQL when all of them can be inserted (a refused one
    /// sends the batch through one at a time, so that each gets its own answer). The outer
    /// error is the database failing.
    async fn create_commands(&self, commands: &[NewCommand]) -> Result<Vec<Result<Command>>>;
    async fn get_command(&self, command_id: Uuid) -> Result<Command>;
    /// Newest first, at most `filter.limit` (default 100, max 1001); only commands of the
    /// sessions of the user `owner_id`, and only those with an id below `before_id` (the last
    /// of the previous page), when given. `filter.cursor` is the API's and is not read here.
    async fn list_commands(
        &self,
        filter: &CommandFilter,
        owner_id: Option<Uuid>,
        before_id: Option<i64>,
    ) -> Result<Vec<Command>>;
    /// Every unfinished command (`pending`, `sent` or `acknowledged`) of each of `agent_ids`,
    /// at most `limit` per agent, oldest first — what [`Store::deliverable_commands`] reads
    /// with `include_unfinished` when an agent (re)connects — in one statement on PostgreSQL;
    /// answers in the order of `agent_ids`.
    async fn unfinished_commands_of(
        &self,
        agent_ids: &[String],
        limit: i64,
    ) -> Result<Vec<Vec<Command>>>;
    /// Commands to deliver to `agent_id` now, oldest first: `pending` ones, plus `sent` ones whose
    /// last send is older than their backoff (`ack_timeout_secs · 2^(attempts-1)`) and which
    /// have fewer than `max_attempts` attempts. With `include_unfinished`, also every `sent` and
    /// `acknowledged` command regardless of timing (used when an agent (re)connects: it answers
    /// duplicates from memory and re-runs idempotent actions otherwise).
    async fn deliverable_commands(
        &self,
        agent_id: &str,
        ack_timeout_secs: f64,
        max_attempts: i32,
        include_unfinished: bool,
        limit: i64,
    ) -> Result<Vec<Command>>;
    /// Agents that have deliverable commands (as in [`Self::deliverable_commands`] without
    /// `include_unfinished`); the dispatcher's periodic sweep starts here.
    async fn agents_with_deliverable_commands(
        &self,
        ack_timeout_secs: f64,
        max_attempts: i32,
    ) -> Result<Vec<String>>;
    /// Claims the next delivery attempt of every command due for `agent_id` (as in
    /// [`Self::deliverable_commands`] without `include_unfinished`, at most `limit`), atomically
    /// and oldest first: `pending|sent → sent`, `attempts += 1`, `sent_at = now`. Rows another
    /// dispatcher is claiming at the same moment are left to it. The dispatcher's usual path:
    /// one statement per batch instead of a read plus one claim per command.
    async fn claim_due_commands(
        &self,
        agent_id: &str,
        ack_timeout_secs: f64,
        max_attempts: i32,
        limit: i64,
    ) -> Result<Vec<Command>>;
    /// [`Store::claim_due_commands`] for several agents at once (one statement on PostgreSQL):
    /// at most `limit` commands per agent, answered in the order of `agent_ids`. An agent
    /// named twice gets its commands once, at its first place.
    async fn claim_due_commands_of(
        &self,
        agent_ids: &[String],
        ack_timeout_secs: f64,
        max_attempts: i32,
        limit: i64,
    ) -> Result<Vec<Vec<Command>>>;
    /// Gives back the claim a command got in its insert (`NewCommand::send_now`) when it could
    /// not be handed to its agent at all: `sent` with its first attempt → `pending`, attempt 0.
    /// True if it was given back; false if it had moved on (acknowledged, finished, resent).
    async fn unclaim_delivery(&self, command_id: Uuid) -> Result<bool>;
    /// Claims one delivery attempt: `pending|sent → sent`, `attempts += 1`, `sent_at = now`, only
    /// if the row still has `expected_attempts` attempts (so two dispatchers never send the same
    /// attempt). Returns the updated command, or `None` if someone else claimed it or it moved on.
    async fn claim_delivery(
        &self,
        command_id: Uuid,
        expected_attempts: i32,
    ) -> Result<Option<Command>>;
    /// `pending|sent → acknowledged`. Returns false (and changes nothing) if the command is
    /// already acknowledged or terminal, or belongs to another agent.
    async fn ack_command(&self, agent_id: &str, command_id: Uuid) -> Result<bool>;
    /// Records the terminal outcome (forward-only: a terminal row never changes again) and, in the
    /// same transaction, moves the command's session: on success to the action's resulting state
    /// (with `vnc_address` from the result when present); a failed `start_session` fails the
    /// session. Returns the command after the call and whether this call changed it.
    async fn finish_command(
        &self,
        agent_id: &str,
        command_id: Uuid,
        outcome: &CommandOutcome,
    ) -> Result<(Command, bool)>;
    /// [`Store::finish_command`] for several reports at once, answering each in order. On
    /// PostgreSQL the commands without a session finish in one statement; the others (and a
    /// report on a command the statement did not change) take the one-report path.
    async fn finish_commands(
        &self,
        reports: &[CommandReport],
    ) -> Result<Vec<Result<(Command, bool)>>>;
    /// Fails (with `reason`) non-terminal commands that cannot finish any more: `sent` or
    /// `acknowledged` rows not updated for `stuck_secs`, `sent` rows out of attempts and past
    /// their last ack timeout, and `pending` rows older than `pending_secs`. A failed
    /// `start_session` fails its session. Returns the commands it failed.
    async fn fail_stuck_commands(
        &self,
        stuck_secs: f64,
        pending_secs: f64,
        ack_timeout_secs: f64,
        max_attempts: i32,
    ) -> Result<Vec<Command>>;

    // --- audit ----------------------------------------------------------------------------

    /// Writes `entry` on its own: only for events that change nothing (a failed sign-in, a
    /// viewer token issued). A change writes its entry through the method that makes it.
    async fn audit_event(&self, entry: &AuditEntry) -> Result<()>;

    // --- retention ------------------------------------------------------------------------

    /// Deletes up to `batch` of the oldest rows of `what` that ended more than
    /// `older_than_secs` ago (a deleted session takes its commands with it) and answers how
    /// many. Only one caller purges at a time across replicas (PostgreSQL: a transaction-scoped
    /// advisory lock); the others answer `None` at once.
    async fn purge(&self, what: Purge, older_than_secs: f64, batch: i64) -> Result<Option<u64>>;
    /// The sessions placed on `agent_id` that have not ended (not terminated or failed),
    /// for reconciling what a (re)connecting agent reports.
    async fn list_live_sessions(&self, agent_id: &str) -> Result<Vec<Session>>;
    /// [`Store::list_live_sessions`] for several agents at once — one statement on PostgreSQL,
    /// so that a storm of reconnecting agents is reconciled in a few — answering in the order
    /// of `agent_ids`.
    async fn list_live_sessions_of(&self, agent_ids: &[String]) -> Result<Vec<Vec<Session>>>;
}

/// Which sessions [`Store::list_sessions`] reads; the default reads them all.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionQuery<'a> {
    /// Only the sessions of this user.
    pub owner_id: Option<Uuid>,
    /// Only the sessions placed on this agent.
    pub agent_id: Option<&'a str>,
    /// Only sessions with a smaller id than this (the last one of the previous page).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: Option<i64>,
}

/// What [`Store::purge`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Completed or failed commands.
    Commands,
    /// Terminated or failed sessions, with their commands.
    Sessions,
    /// Audit entries.
    Audit,
}

/// Connections a PostgreSQL store keeps at most, unless told otherwise.
pub const DEFAULT_PG_POOL_SIZE: u32 = 16;

/// Opens the store a URL names: `postgres://…`/`postgresql://…` or `sqlite:PATH` / `sqlite://PATH`
/// (created if missing). Does not migrate.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with_pool(url, DEFAULT_PG_POOL_SIZE).await
}

/// [`open`], a PostgreSQL store keeping at most `pg_pool_size` connections (at least one).
/// SQLite's pool is its own (one writer, a few readers) and does not change.
pub async fn open_with_pool(url: &str, pg_pool_size: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            postgres::PgStore::connect_with_pool(url, pg_pool_size).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}
