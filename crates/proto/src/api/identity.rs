//! Who uses StreamSpace: users, their roles and groups, their API tokens, and signing in.
//!
//! These are the objects of `/api/v1/users`, `/api/v1/groups`, `/api/v1/tokens` and
//! `/api/v1/auth/*`. A user's password (or its hash) never appears in any of them: a request
//! may carry a new password, no answer ever carries one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a user may do. Ordered by power: `User < Operator < Admin`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Launches the templates their groups may use; sees and acts on their own sessions only.
    #[default]
    User,
    /// Templates, agents, agent keys and every session; not users and groups.
    Operator,
    /// Everything, users and groups included.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Self::User, Self::Operator, Self::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = super::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| super::UnknownValue {
                what: "role",
                value: s.to_owned(),
            })
    }
}

/// A person (or an automation account) known to StreamSpace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: Uuid,
    /// Unique, lower case, never changes.
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    /// A disabled user cannot sign in, and their tokens and browser sessions stop working.
    pub disabled: bool,
    /// Names of the groups the user belongs to.
    pub groups: Vec<String>,
    /// Whether the user can sign in with a password (single-sign-on users have none).
    pub has_password: bool,
    /// Whether signing in also needs a one-time code (RFC 6238) or a recovery code.
    #[serde(default)]
    pub totp_enabled: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/users`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    #[serde(default)]
    pub role: Role,
    /// Without one, the user can sign in only through single sign-on, or with a token an admin
    /// creates for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// What deleting a user does with their home (templates with `persistent_home: user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HomeDisposal {
    /// Leave it on the agent that holds it, for an operator to back up or remove.
    Keep,
    /// Remove it from that agent.
    Delete,
}

impl HomeDisposal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Delete => "delete",
        }
    }
}

impl std::str::FromStr for HomeDisposal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep" => Ok(Self::Keep),
            "delete" => Ok(Self::Delete),
            _ => Err(format!(
                "unknown home choice {s:?}; expected keep or delete"
            )),
        }
    }
}

/// The query of `DELETE /api/v1/users/{username}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct DeleteUserQuery {
    /// What to do with the user's home (`keep` or `delete`); required when the user has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub home: Option<HomeDisposal>,
}

/// `PATCH /api/v1/users/{username}`: every field is optional; what is omitted stays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// An empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `true` turns off the user's one-time codes and drops their recovery codes (for a user
    /// who lost their authenticator); they may enrol again afterwards.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_totp: bool,
}

/// A named set of users; templates name the groups that may launch them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Usernames of the members.
    pub members: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// `PATCH /api/v1/groups/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A personal API token as listed (its secret is shown only once, at creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// Username of the token's owner; the token can do exactly what that user can.
    pub user: String,
    /// The first characters of the secret, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    /// Lifetime; without it the token lasts until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    /// Username to create the token for (admins only); default: the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Answer to `POST /api/v1/tokens` (and part of a sign-in with `token_name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub id: Uuid,
    pub name: String,
    /// The secret, shown this once.
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// A current TOTP code or a recovery code, for accounts that use one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    /// Also create an API token of this name and return it (how `streamspace login` gets one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
}

/// One single sign-on provider, as `GET /api/v1/auth/providers` lists it for the sign-in page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignInProvider {
    /// The provider's id in the server's configuration (a path segment).
    pub id: String,
    /// What the sign-in button says.
    pub display_name: String,
    /// Where the browser goes to sign in (`/api/v1/auth/oidc/{id}/login`); add
    /// `?return_to=/local/path` to come back somewhere else than the start page.
    pub login_url: String,
}

/// Answer to `POST /api/v1/auth/login`; the browser session itself travels in a cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    pub user: User,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<CreatedToken>,
}

/// `POST /api/v1/auth/password`: change your own password.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub old_password: String,
    pub new_password: String,
}

/// Answer to `POST /api/v1/auth/totp`: a new, pending one-time-code secret to put into an
/// authenticator app. Codes are RFC 6238: SHA-1, 6 digits, a 30-second step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrolment {
    /// Base32, for typing in by hand.
    pub secret: String,
    /// The same as an `otpauth://totp/...` URI, what a QR code would carry.
    pub otpauth_uri: String,
}

/// `POST /api/v1/auth/totp/confirm`: a code from the pending secret, to turn it on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfirmTotp {
    pub code: String,
}

/// Answer to `POST /api/v1/auth/totp/confirm`: one-time recovery codes, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// `DELETE /api/v1/auth/totp`: turn one-time codes off (needs your password).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DisableTotp {
    pub password: String,
}

/// Answer to `GET /api/v1/auth/me`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub user: User,
    /// The limits that apply to you (`None`: unlimited).
    pub quota: super::QuotaLimits,
    /// What your sessions hold now.
    pub usage: super::QuotaUsage,
    /// What a session counts against your quota in a dimension its template does not size
    /// (absent from servers older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_session_size: Option<super::SessionSize>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// Who, in words (`user:alice`, `anonymous:bob` for a failed sign-in).
    pub actor: String,
    /// The acting user's id, when it was a user.
    pub actor_id: Option<Uuid>,
    /// What was done, e.g. `session.create`, `user.update`, `auth.login_failed`.
    pub action: String,
    /// What it was done to (a session id, a username, …).
    pub target: String,
    pub detail: serde_json::Value,
    /// The client's address as the server saw it.
    pub client_addr: Option<String>,
}

/// Query of `GET /api/v1/audit`: every field narrows the answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// A username: only what that user did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Entries at or after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// Where the previous page ended (its `next_cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Entries per page: default 100, at most 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A page of a listing, newest first; `next_cursor` is absent on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power_and_round_trip() {
        assert!(Role::User < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(
                role.as_str().parse::<Role>().expect("valid in the test"),
                role
            );
            assert_eq!(
                serde_json::to_value(role).expect("valid in the test"),
                serde_json::Value::String(role.as_str().into())
            );
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let e = serde_json::from_str::<CreateUser>(r#"{"username":"a","admin":true}"#);
        assert!(e.is_err(), "an unknown field must not be ignored");
        let u: CreateUser = serde_json::from_str(r#"{"username":"a"}"#).expect("valid in the test");
        assert_eq!(u.role, Role::User, "a new user is a plain user unless told");
    }
}
