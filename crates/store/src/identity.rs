//! Users, groups and personal tokens: the identity half of the store.
//!
//! [`Identity`] is a supertrait of [`crate::Store`], so the server reaches it through the same
//! `Arc<dyn Store>`. Usernames are unique and lower case; a user's groups are read with the
//! user, so that one lookup gives the policy everything it decides on. Guards that must hold
//! across concurrent requests are enforced inside one transaction here — notably that the last
//! enabled admin is never disabled, demoted or deleted. Every change takes the [`AuditEntry`]
//! recording it and writes it in its transaction (see the crate's "Audit" section).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use streamspace_proto::api::{ApiToken, AuditRecord, Group, Role, User};
use uuid::Uuid;

use crate::{AuditEntry, Result};

/// The bootstrap admin user: created by migration 0004 with this fixed id, so that what an
/// older version recorded (sessions owned by "admin", the admin token, audit rows) belongs to it.
pub const BOOTSTRAP_ADMIN_ID: Uuid = Uuid::from_u128(1);

/// A user to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub id: Uuid,
    /// Lower case (the database refuses anything else).
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    /// Argon2id PHC string, when the user may sign in with a password.
    pub password_hash: Option<String>,
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub display_name: Option<String>,
    /// `Some(None)` clears the address.
    pub email: Option<Option<String>>,
    pub password_hash: Option<String>,
}

impl UserChange {
    /// Whether applying this change to `user` would leave it without admin power.
    pub fn removes_admin(&self, user: &User) -> bool {
        let role = self.role.unwrap_or(user.role);
        let disabled = self.disabled.unwrap_or(user.disabled);
        user.role == Role::Admin && !user.disabled && (role != Role::Admin || disabled)
    }
}

/// A user with what only the server may see.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: Option<String>,
    /// The base32 one-time-code secret: pending while `user.totp_enabled` is false, in use once
    /// it is true. Stored as-is (see migration 0005): a secret at rest.
    pub totp_secret: Option<String>,
    /// The RFC 6238 time step of the last code accepted (codes of it and before are refused).
    pub totp_last_step: Option<i64>,
}

/// A group to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewGroup {
    pub id: Uuid,
    pub name: String,
    pub description: String,
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only entries older than this one (the page cursor).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Users, groups and their tokens. All methods are safe to call from several replicas at once.
#[async_trait]
pub trait Identity: Send + Sync {
    /// `Conflict` if the username is taken.
    async fn create_user(&self, new: &NewUser, audit: &AuditEntry) -> Result<User>;
    /// `NotFound` if there is no such user.
    async fn get_user(&self, username: &str) -> Result<UserRecord>;
    async fn get_user_by_id(&self, id: Uuid) -> Result<UserRecord>;
    /// Ordered by username.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Applies `change` in one transaction; `Conflict` if it would leave no enabled admin.
    async fn update_user(
        &self,
        username: &str,
        change: &UserChange,
        audit: &AuditEntry,
    ) -> Result<User>;
    /// Deletes the user (their tokens go with them; their sessions stay, ownerless) and returns
    /// it as it was; `Conflict` if it is the last enabled admin, `HomeChoiceNeeded` if the
    /// user has a home ([`Identity::delete_user_and_home`] says what to do with it).
    async fn delete_user(&self, username: &str, audit: &AuditEntry) -> Result<User>;
    /// [`Identity::delete_user`], doing `home` with the user's home if they have one; returns
    /// the `delete_user_home` command queued for the agent that holds it, if any.
    async fn delete_user_and_home(
        &self,
        username: &str,
        home: crate::HomeChoice,
        audit: &AuditEntry,
    ) -> Result<(User, Option<streamspace_proto::api::Command>)>;
    /// Records a successful sign-in.
    async fn record_login(&self, id: Uuid) -> Result<()>;

    /// Starts one-time-code enrolment: stores `secret` as pending (not yet needed to sign in).
    /// `Conflict` if the user has one-time codes turned on already.
    async fn start_totp(&self, id: Uuid, secret: &str, audit: &AuditEntry) -> Result<()>;
    /// Turns the pending secret on, records `step` as used and replaces the user's recovery
    /// codes with `code_hashes`. `Conflict` if there is no pending secret.
    async fn enable_totp(
        &self,
        id: Uuid,
        step: i64,
        code_hashes: &[String],
        audit: &AuditEntry,
    ) -> Result<()>;
    /// Turns one-time codes off and forgets the secret and the recovery codes; whether they
    /// were on (also added to `audit`'s detail as `was_enabled`).
    async fn clear_totp(&self, id: Uuid, audit: &AuditEntry) -> Result<bool>;
    /// Records `step` as used if it is later than the last step used; false if it is not (a
    /// replayed code). Atomic: of two sign-ins with the same code, one wins.
    async fn use_totp_step(&self, id: Uuid, step: i64) -> Result<bool>;
    /// Marks an unused recovery code of the user as used and writes `audit` with the number of
    /// codes `left` added to its detail; false (and nothing written) if there is none with this
    /// hash.
    async fn use_recovery_code(
        &self,
        id: Uuid,
        code_hash: &str,
        audit: &AuditEntry,
    ) -> Result<bool>;
    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, id: Uuid) -> Result<i64>;
    /// Every stored one-time-code secret (pending or in use), by user id, as stored.
    async fn totp_secrets(&self) -> Result<Vec<(Uuid, String)>>;
    /// Replaces the user's stored one-time-code secret `old` by `new` (the same secret in
    /// another stored form: encrypted, or under a newer key); false if it is no longer `old`.
    async fn reseal_totp_secret(&self, id: Uuid, old: &str, new: &str) -> Result<bool>;

    /// `Conflict` if the name is taken.
    async fn create_group(&self, new: &NewGroup, audit: &AuditEntry) -> Result<Group>;
    async fn get_group(&self, name: &str) -> Result<Group>;
    /// Ordered by name.
    async fn list_groups(&self) -> Result<Vec<Group>>;
    async fn update_group(
        &self,
        name: &str,
        description: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<Group>;
    async fn delete_group(&self, name: &str, audit: &AuditEntry) -> Result<()>;
    /// Adds a local membership (a no-op if the user is a member already; a membership a
    /// single sign-on provider manages becomes local, so the next sign-in keeps it).
    async fn add_group_member(&self, group: &str, username: &str, audit: &AuditEntry)
    -> Result<()>;
    /// `NotFound` if the user is not a member.
    async fn remove_group_member(
        &self,
        group: &str,
        username: &str,
        audit: &AuditEntry,
    ) -> Result<()>;

    /// Personal API tokens (and the bootstrap admin token) that are neither revoked nor
    /// expired, of one user or of everyone; oldest first.
    async fn list_tokens(&self, user_id: Option<Uuid>) -> Result<Vec<ApiToken>>;

    /// Audit entries, newest first, at most `query.limit`.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}

/// Statements of the identity half that both backends share.
pub(crate) mod sql {
    macro_rules! user_columns {
        () => {
            "id, username, display_name, email, role, disabled, password_hash, totp_secret, \
             totp_enabled, totp_last_step, last_login_at, created_at, updated_at"
        };
    }

    pub(crate) const USER_INSERT: &str = concat!(
        "INSERT INTO users (id, username, display_name, email, role, password_hash) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        user_columns!()
    );
    pub(crate) const USER_GET: &str = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE username = $1"
    );
    pub(crate) const USER_BY_ID: &str =
        concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    pub(crate) const USER_LIST: &str =
        concat!("SELECT ", user_columns!(), " FROM users ORDER BY username");
    /// Read the row back afterwards: SQLite's `RETURNING` does not see what triggers change.
    pub(crate) const USER_UPDATE: &str = "UPDATE users SET role = COALESCE($2, role), \
         disabled = COALESCE($3, disabled), display_name = COALESCE($4, display_name), \
         email = CASE WHEN $5 THEN $6 ELSE email END, \
         password_hash = COALESCE($7, password_hash) WHERE id = $1";
    pub(crate) const TOTP_START: &str = "UPDATE users SET totp_secret = $2, \
         totp_last_step = NULL WHERE id = $1 AND NOT totp_enabled";
    pub(crate) const TOTP_ENABLE: &str = "UPDATE users SET totp_enabled = TRUE, \
         totp_last_step = $2 WHERE id = $1 AND totp_secret IS NOT NULL AND NOT totp_enabled";
    pub(crate) const TOTP_CLEAR: &str = "UPDATE users SET totp_secret = NULL, \
         totp_enabled = FALSE, totp_last_step = NULL WHERE id = $1";
    pub(crate) const TOTP_WAS_ENABLED: &str = "SELECT totp_enabled FROM users WHERE id = $1";
    pub(crate) const TOTP_SECRETS: &str =
        "SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id";
    pub(crate) const TOTP_RESEAL: &str =
        "UPDATE users SET totp_secret = $3 WHERE id = $1 AND totp_secret = $2";
    pub(crate) const TOTP_USE_STEP: &str = "UPDATE users SET totp_last_step = $2 \
         WHERE id = $1 AND totp_enabled AND (totp_last_step IS NULL OR totp_last_step < $2)";
    pub(crate) const RECOVERY_DELETE: &str = "DELETE FROM recovery_codes WHERE user_id = $1";
    pub(crate) const RECOVERY_INSERT: &str =
        "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)";
    pub(crate) const RECOVERY_LEFT: &str =
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL";
    pub(crate) const USER_DELETE: &str = "DELETE FROM users WHERE id = $1";
    pub(crate) const USER_GROUPS: &str = "SELECT g.name FROM group_members m \
         JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1 ORDER BY g.name";
    pub(crate) const ALL_MEMBERSHIPS: &str = "SELECT m.user_id, g.name FROM group_members m \
         JOIN groups g ON g.id = m.group_id ORDER BY g.name";

    macro_rules! group_columns {
        () => {
            "id, name, description, created_at, updated_at"
        };
    }
    pub(crate) const GROUP_INSERT: &str = concat!(
        "INSERT INTO groups (id, name, description) VALUES ($1, $2, $3) RETURNING ",
        group_columns!()
    );
    pub(crate) const GROUP_GET: &str =
        concat!("SELECT ", group_columns!(), " FROM groups WHERE name = $1");
    pub(crate) const GROUP_LIST: &str =
        concat!("SELECT ", group_columns!(), " FROM groups ORDER BY name");
    pub(crate) const GROUP_UPDATE: &str =
        "UPDATE groups SET description = COALESCE($2, description) WHERE name = $1";
    pub(crate) const GROUP_DELETE: &str = "DELETE FROM groups WHERE name = $1";
    pub(crate) const GROUP_MEMBERS: &str = "SELECT u.username FROM group_members m \
         JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY u.username";
    pub(crate) const ALL_MEMBERS: &str = "SELECT m.group_id, u.username FROM group_members m \
         JOIN users u ON u.id = m.user_id ORDER BY u.username";
    pub(crate) const MEMBER_ADD: &str = "INSERT INTO group_members (group_id, user_id) \
         SELECT g.id, u.id FROM groups g, users u WHERE g.name = $1 AND u.username = $2 \
         ON CONFLICT (group_id, user_id) DO UPDATE SET source = 'local'";
    pub(crate) const MEMBER_REMOVE: &str = "DELETE FROM group_members \
         WHERE group_id = (SELECT id FROM groups WHERE name = $1) \
         AND user_id = (SELECT id FROM users WHERE username = $2)";
    pub(crate) const GROUP_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM groups WHERE name = $1)";
    pub(crate) const USER_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)";
}
