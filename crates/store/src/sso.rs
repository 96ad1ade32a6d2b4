//! Single sign-on through OpenID Connect providers: the flows in progress, and the users they
//! sign in.
//!
//! [`SingleSignOn`] is a supertrait of [`crate::Store`]. A flow is stored when the browser is
//! sent to the provider and taken — once — by the callback, on whichever replica it lands. A
//! provider's user is found by (issuer, subject), never by name: a provider's "admin" is a new
//! user (`admin-2`), never the local one. [`SingleSignOn::oidc_sign_in`] creates or updates
//! that user, replaces the group memberships the provider manages and keeps local ones, all in
//! one transaction.

use async_trait::async_trait;
use streamspace_proto::api::Role;

use crate::{AuditEntry, Result, UserRecord};

/// Most suffixes tried to make a provider's username unique (`name`, `name-2`, …).
pub const MAX_USERNAME_SUFFIX: u32 = 1000;

/// A sign-in flow to remember until its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOidcFlow {
    /// The random `state` sent to the provider; the flow's key.
    pub state: String,
    /// The configured provider's id.
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// The local path to go to once signed in.
    pub return_to: String,
}

/// A flow taken by its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcFlow {
    pub flow: NewOidcFlow,
    /// Started longer ago than the lifetime the caller allows.
    pub expired: bool,
}

/// What a provider said about a user whose ID token was verified, mapped to StreamSpace terms.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcSignIn {
    pub issuer: String,
    pub subject: String,
    /// The username wanted (lower case, valid); made unique with a suffix on first sign-in.
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    /// The role the provider's groups map to.
    pub role: Role,
    /// The StreamSpace groups the provider's groups map to (created if missing); they replace
    /// the user's provider-managed memberships.
    pub groups: Vec<String>,
}

/// OpenID Connect flows and users. All methods are safe to call from several replicas at once.
#[async_trait]
pub trait SingleSignOn: Send + Sync {
    /// Remembers a flow (and forgets flows older than `purge_after_secs`).
    async fn start_oidc_flow(&self, flow: &NewOidcFlow, purge_after_secs: f64) -> Result<()>;
    /// Takes the flow of `state`, so that no other callback can; `None` if there is none.
    /// `expired` if it began more than `max_age_secs` ago.
    async fn take_oidc_flow(&self, state: &str, max_age_secs: f64) -> Result<Option<OidcFlow>>;
    /// Signs in the provider's user, in one transaction: a known (issuer, subject) is updated
    /// (name, email, role, provider groups, last sign-in) unless it is disabled, in which case
    /// nothing changes and the record says so; an unknown one becomes a new user. The role is
    /// never taken from the last enabled admin.
    ///
    /// `audit` is written in the same transaction (not for a disabled user), naming the user:
    /// its `actor`, `actor_id` and `target` are set to `user:NAME`, the id and `NAME`, and
    /// `created` (whether the user is new) is added to an object `detail`.
    async fn oidc_sign_in(&self, sign_in: &OidcSignIn, audit: &AuditEntry) -> Result<UserRecord>;
}

/// Statements of the single sign-on half that both backends share.
pub(crate) mod sql {
    pub(crate) const FLOW_INSERT: &str = "INSERT INTO oidc_flows \
         (state, provider, nonce, pkce_verifier, return_to) VALUES ($1, $2, $3, $4, $5)";
    pub(crate) const USER_BY_SUBJECT: &str =
        "SELECT id FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2";
    pub(crate) const USER_INSERT: &str = "INSERT INTO users \
         (id, username, display_name, email, role, oidc_issuer, oidc_subject) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)";
    pub(crate) const USER_UPDATE: &str =
        "UPDATE users SET display_name = $2, email = $3, role = $4 WHERE id = $1";
    pub(crate) const OTHER_ADMINS: &str = "SELECT COUNT(*) FROM users \
         WHERE role = 'admin' AND NOT disabled AND id <> $1";
    pub(crate) const GROUP_ENSURE: &str = "INSERT INTO groups (id, name, description) \
         VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
    pub(crate) const MEMBERS_CLEAR: &str =
        "DELETE FROM group_members WHERE user_id = $1 AND source = 'oidc'";
    pub(crate) const MEMBER_ADD: &str = "INSERT INTO group_members (group_id, user_id, source) \
         SELECT id, $2, 'oidc' FROM groups WHERE name = $1 \
         ON CONFLICT (group_id, user_id) DO NOTHING";
}
