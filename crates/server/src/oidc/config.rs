//! How one OpenID Connect provider is configured: where it is, who we are to it, and how its
//! claims map to StreamSpace's users, groups and roles.
//!
//! The CLI builds these from a providers file (TOML, one `[[provider]]` table each) or, for a
//! single provider, from flags; the field names here are the file's keys.

use std::collections::BTreeMap;

use serde::Deserialize;
use streamspace_proto::api::Role;

/// One single sign-on provider. Its `Debug` leaves the client secret out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The provider's id: lower-case letters, digits and `-`; part of its URLs
    /// (`/api/v1/auth/oidc/{id}/login`, and the redirect URI registered at the provider).
    pub id: String,
    /// What the sign-in button says; defaults to the id.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The issuer (`https://accounts.google.com`, `https://kc.example/realms/corp`); its
    /// `/.well-known/openid-configuration` is read at start.
    pub issuer_url: String,
    pub client_id: String,
    /// The client secret itself (the CLI reads it from `client_secret_file`); `None` for a
    /// public client, which PKCE still protects.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (surrounding whitespace ignored). Read by the CLI.
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim naming the user (a dotted path reaches into objects).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    #[serde(default = "default_name_claim")]
    pub display_name_claim: String,
    /// The ID-token claim listing the user's groups at the provider (e.g. `groups`, or
    /// `realm_access.roles` for Keycloak realm roles); none: no groups are read.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Provider group → StreamSpace group (created on first use). Provider groups not listed
    /// here are ignored.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// Provider group → role; the highest role of the user's groups wins.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The role of users none of whose groups is in `roles`.
    #[serde(default = "default_role")]
    pub default_role: Role,
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into()]
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_email_claim() -> String {
    "email".into()
}

fn default_name_claim() -> String {
    "name".into()
}

fn default_role() -> Role {
    Role::User
}

impl OidcProviderConfig {
    /// A provider with the defaults for everything but what identifies it.
    pub fn new(id: &str, issuer_url: &str, client_id: &str) -> Self {
        Self {
            id: id.into(),
            display_name: None,
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            client_secret: None,
            client_secret_file: None,
            scopes: default_scopes(),
            username_claim: default_username_claim(),
            email_claim: default_email_claim(),
            display_name_claim: default_name_claim(),
            groups_claim: None,
            groups: BTreeMap::new(),
            roles: BTreeMap::new(),
            default_role: default_role(),
        }
    }

    /// What the sign-in button says.
    pub fn label(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }

    /// Whether `id` may name a provider (it becomes a URL path segment).
    pub fn valid_id(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }
}

impl std::fmt::Debug for OidcProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProviderConfig")
            .field("id", &self.id)
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("groups", &self.groups)
            .field("roles", &self.roles)
            .field("default_role", &self.default_role)
            .finish_non_exhaustive()
    }
}

/// The providers file: `[[provider]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvidersFile {
    #[serde(default, rename = "provider")]
    pub providers: Vec<OidcProviderConfig>,
}
