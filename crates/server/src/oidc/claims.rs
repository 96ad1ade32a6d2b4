//! From a verified ID token's claims to a StreamSpace user: username, display name, email,
//! groups and role, as the provider's configuration maps them. Pure, so tested as a table.

use serde_json::Value;
use streamspace_proto::api::Role;

use super::config::OidcProviderConfig;

/// Longest username taken from a provider, leaving room for a `-N` suffix (64 at most).
const MAX_BASE_USERNAME: usize = 56;
/// Longest display name or email address kept.
const MAX_TEXT: usize = 256;

/// What the claims say, in StreamSpace's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapped {
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub role: Role,
    pub groups: Vec<String>,
}

/// The claim at `path`: the key itself if present (claim names may be URLs with dots),
/// else a dotted path into nested objects.
pub(crate) fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(claims, |value, key| value.get(key))
}

fn text(claims: &Value, path: &str) -> Option<String> {
    claim(claims, path)
        .and_then(Value::as_str)
        .map(|s| {
            s.trim()
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
        })
        .filter(|s| !s.is_empty() && s.len() <= MAX_TEXT)
}

/// A username from what a provider calls its user: lower case, characters outside
/// `a-z 0-9 . _ - @` replaced by `-`, starting with a letter or digit, at most
/// [`MAX_BASE_USERNAME`] bytes.
pub(crate) fn username_from(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' | '@' => c,
            _ => '-',
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(MAX_BASE_USERNAME)
        .collect();
    let cleaned = cleaned.trim_end_matches(['-', '.', '_', '@']).to_owned();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// The provider's group names in the groups claim (a list of strings, or one string).
fn provider_groups(config: &OidcProviderConfig, claims: &Value) -> Vec<String> {
    let Some(path) = &config.groups_claim else {
        return Vec::new();
    };
    match claim(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Maps verified claims; `Err` names the claim that is missing or unusable.
pub(crate) fn map(config: &OidcProviderConfig, claims: &Value) -> Result<Mapped, String> {
    let username = text(claims, &config.username_claim)
        .and_then(|raw| username_from(&raw))
        .ok_or_else(|| {
            format!(
                "the provider's ID token has no usable username in its {:?} claim",
                config.username_claim
            )
        })?;
    let theirs = provider_groups(config, claims);
    let mut groups: Vec<String> = theirs
        .iter()
        .filter_map(|g| config.groups.get(g).cloned())
        .collect();
    groups.sort();
    groups.dedup();
    let role = theirs
        .iter()
        .filter_map(|g| config.roles.get(g).copied())
        .max()
        .unwrap_or(config.default_role);
    Ok(Mapped {
        display_name: text(claims, &config.display_name_claim).unwrap_or_else(|| username.clone()),
        email: text(claims, &config.email_claim),
        username,
        role,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config() -> OidcProviderConfig {
        let mut config = OidcProviderConfig::new("corp", "https://idp.example", "streamspace");
        config.groups_claim = Some("groups".into());
        config.groups = [("eng", "engineering"), ("ops", "operations")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .into();
        config.roles = [("ops", Role::Operator), ("root", Role::Admin)]
            .map(|(a, b)| (a.to_owned(), b))
            .into();
        config
    }

    #[test]
    fn claims_map_to_a_user() {
        let claims = json!({
            "sub": "1", "preferred_username": "Alice Smith", "name": "Alice",
            "email": "alice@example.test", "groups": ["eng", "ops", "unmapped", "eng"],
        });
        let mapped = map(&config(), &claims).expect("maps");
        assert_eq!(
            mapped,
            Mapped {
                username: "alice-smith".into(),
                display_name: "Alice".into(),
                email: Some("alice@example.test".into()),
                role: Role::Operator,
                groups: vec!["engineering".into(), "operations".into()],
            }
        );
        let plain = map(&config(), &json!({ "preferred_username": "bob" })).expect("maps");
        assert_eq!(
            (plain.role, plain.groups, plain.display_name, plain.email),
            (Role::User, vec![], "bob".into(), None),
            "no groups: the default role, the username as display name"
        );
        let root = map(
            &config(),
            &json!({"preferred_username": "r", "groups": "root"}),
        );
        assert_eq!(
            root.map(|m| m.role),
            Ok(Role::Admin),
            "one group as a string"
        );
    }

    #[test]
    fn nested_and_url_claims_are_found() {
        let claims = json!({
            "realm_access": { "roles": ["ops"] },
            "https://example.test/groups": ["eng"],
        });
        assert_eq!(claim(&claims, "realm_access.roles"), Some(&json!(["ops"])));
        assert_eq!(
            claim(&claims, "https://example.test/groups"),
            Some(&json!(["eng"]))
        );
        assert_eq!(claim(&claims, "realm_access.nothing"), None);
    }

    #[test]
    fn usernames_are_made_valid_or_refused() {
        for (raw, want) in [
            ("Alice", Some("alice")),
            ("  -_Bob.Jones@Example.COM ", Some("bob.jones@example.com")),
            ("émile zola", Some("mile-zola")),
            ("___", None),
            ("", None),
        ] {
            assert_eq!(username_from(raw).as_deref(), want, "{raw:?}");
        }
        let long = username_from(&"x".repeat(300)).expect("long names are cut");
        assert_eq!(long.len(), MAX_BASE_USERNAME);
        let missing = map(&config(), &json!({ "email": "a@b" })).expect_err("no username");
        assert!(missing.contains("preferred_username"), "{missing}");
    }
}
