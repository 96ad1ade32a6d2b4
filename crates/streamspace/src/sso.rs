//! `streamspace server`'s single sign-on flags: a providers file (TOML) for any number of
//! OpenID Connect providers, or flags (and their variables) for one. Client secrets are read
//! from files, never given on the command line, where `ps` would show them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use streamspace_proto::api::Role;
use streamspace_server::{OidcProviderConfig, OidcProvidersFile};

#[derive(Debug, Args)]
pub struct OidcArgs {
    /// A TOML file of single sign-on providers, one `[[provider]]` table each (see
    /// docs/OPERATIONS.md). Needs --public-url.
    #[arg(long, env = "STREAMSPACE_OIDC_PROVIDERS")]
    pub oidc_providers: Option<PathBuf>,
    /// One provider by flags instead: its issuer URL (its discovery document is
    /// ISSUER/.well-known/openid-configuration). Needs --public-url.
    #[arg(long, env = "STREAMSPACE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The provider's id, part of its redirect URI PUBLIC_URL/api/v1/auth/oidc/ID/callback.
    #[arg(long, env = "STREAMSPACE_OIDC_ID", default_value = "sso")]
    pub oidc_id: String,
    /// What the sign-in button says [default: the id].
    #[arg(long, env = "STREAMSPACE_OIDC_DISPLAY_NAME")]
    pub oidc_display_name: Option<String>,
    #[arg(long, env = "STREAMSPACE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// A file holding the client secret (none: a public client).
    #[arg(long, env = "STREAMSPACE_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// Scopes asked for besides `openid` (comma-separated).
    #[arg(
        long,
        env = "STREAMSPACE_OIDC_SCOPES",
        value_delimiter = ',',
        default_value = "profile,email"
    )]
    pub oidc_scopes: Vec<String>,
    /// The ID-token claim naming the user.
    #[arg(
        long,
        env = "STREAMSPACE_OIDC_USERNAME_CLAIM",
        default_value = "preferred_username"
    )]
    pub oidc_username_claim: String,
    #[arg(long, env = "STREAMSPACE_OIDC_EMAIL_CLAIM", default_value = "email")]
    pub oidc_email_claim: String,
    /// The ID-token claim listing the user's groups (a dotted path reaches into objects,
    /// e.g. realm_access.roles) [default: none, no groups are read].
    #[arg(long, env = "STREAMSPACE_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// PROVIDER_GROUP=GROUP: members of the provider's group join this StreamSpace group
    /// (repeat, or comma-separate in the variable).
    #[arg(long, env = "STREAMSPACE_OIDC_GROUP_MAP", value_delimiter = ',', value_parser = pair)]
    pub oidc_group_map: Vec<(String, String)>,
    /// PROVIDER_GROUP=ROLE (admin, operator or user): the highest role of a user's groups wins.
    #[arg(long, env = "STREAMSPACE_OIDC_ROLE_MAP", value_delimiter = ',', value_parser = pair)]
    pub oidc_role_map: Vec<(String, String)>,
    /// The role of users none of whose groups is in --oidc-role-map.
    #[arg(long, env = "STREAMSPACE_OIDC_DEFAULT_ROLE", default_value = "user", value_parser = role)]
    pub oidc_default_role: Role,
}

fn pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => {
            Ok((a.trim().to_owned(), b.trim().to_owned()))
        }
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

fn role(s: &str) -> Result<Role, String> {
    s.parse::<Role>()
        .map_err(|_| format!("{s:?} is not a role (admin, operator or user)"))
}

/// The providers the flags and the providers file configure, secrets read.
pub fn providers(args: &OidcArgs) -> anyhow::Result<Vec<OidcProviderConfig>> {
    let mut providers = match &args.oidc_providers {
        Some(path) => from_file(path)?,
        None => Vec::new(),
    };
    if let Some(issuer) = &args.oidc_issuer {
        providers.push(from_flags(args, issuer)?);
    } else if args.oidc_client_id.is_some() {
        bail!("--oidc-client-id needs --oidc-issuer");
    }
    Ok(providers)
}

fn from_file(path: &Path) -> anyhow::Result<Vec<OidcProviderConfig>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the providers file {}", path.display()))?;
    let file: OidcProvidersFile = toml::from_str(&text)
        .with_context(|| format!("parsing the providers file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    file.providers
        .into_iter()
        .map(|mut provider| {
            if provider.client_secret.is_some() {
                bail!(
                    "provider {:?} in {}: put the client secret in a file named by \
                     client_secret_file, not in the providers file",
                    provider.id,
                    path.display()
                );
            }
            if let Some(file) = provider.client_secret_file.take() {
                // Relative to the providers file, as a person writing it would expect.
                provider.client_secret = Some(read_secret(&base.join(file))?);
            }
            Ok(provider)
        })
        .collect()
}

fn from_flags(args: &OidcArgs, issuer: &str) -> anyhow::Result<OidcProviderConfig> {
    let client_id = args
        .oidc_client_id
        .as_deref()
        .context("--oidc-issuer needs --oidc-client-id")?;
    let mut provider = OidcProviderConfig::new(&args.oidc_id, issuer, client_id);
    provider.display_name = args.oidc_display_name.clone();
    if let Some(file) = &args.oidc_client_secret_file {
        provider.client_secret = Some(read_secret(file)?);
    }
    provider.scopes = args
        .oidc_scopes
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    provider.username_claim = args.oidc_username_claim.clone();
    provider.email_claim = args.oidc_email_claim.clone();
    provider.groups_claim = args.oidc_groups_claim.clone();
    provider.groups = args.oidc_group_map.iter().cloned().collect();
    provider.roles = args
        .oidc_role_map
        .iter()
        .map(|(group, name)| Ok((group.clone(), role(name).map_err(anyhow::Error::msg)?)))
        .collect::<anyhow::Result<BTreeMap<_, _>>>()
        .context("--oidc-role-map")?;
    provider.default_role = args.oidc_default_role;
    Ok(provider)
}

fn read_secret(path: &Path) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("reading the client secret file {}", path.display()))?;
    let secret = secret.trim();
    if secret.is_empty() {
        bail!("the client secret file {} is empty", path.display());
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(extra: &[&str]) -> anyhow::Result<Vec<OidcProviderConfig>> {
        let mut argv = vec!["streamspace", "server", "--database-url", "sqlite:x"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv)?;
        let Command::Server(args) = cli.command else {
            bail!("expected the server command");
        };
        providers(&args.oidc)
    }

    #[test]
    fn one_provider_from_flags() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n")?;
        let secret = secret.display().to_string();
        let got = parse(&[
            "--oidc-issuer",
            "https://kc.example/realms/corp",
            "--oidc-client-id",
            "streamspace",
            "--oidc-client-secret-file",
            &secret,
            "--oidc-groups-claim",
            "groups",
            "--oidc-group-map",
            "eng=engineering",
            "--oidc-role-map",
            "admins=admin",
        ])?;
        let mut want =
            OidcProviderConfig::new("sso", "https://kc.example/realms/corp", "streamspace");
        want.client_secret = Some("s3cret".into());
        want.groups_claim = Some("groups".into());
        want.groups = [("eng".to_owned(), "engineering".to_owned())].into();
        want.roles = [("admins".to_owned(), Role::Admin)].into();
        assert_eq!(got, vec![want]);
        assert!(parse(&[])?.is_empty(), "no provider unless configured");
        assert!(
            parse(&["--oidc-issuer", "https://x"]).is_err(),
            "needs a client id"
        );
        let not_a_role = [
            "--oidc-issuer",
            "https://x",
            "--oidc-client-id",
            "c",
            "--oidc-role-map",
            "a=root",
        ];
        assert!(parse(&not_a_role).is_err(), "not a role");
        Ok(())
    }

    #[test]
    fn providers_from_a_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("google.secret"), "g-secret")?;
        let file = dir.path().join("providers.toml");
        std::fs::write(
            &file,
            r#"
[[provider]]
id = "google"
display_name = "Google"
issuer_url = "https://accounts.google.com"
client_id = "123.apps.googleusercontent.com"
client_secret_file = "google.secret"
username_claim = "email"

[[provider]]
id = "keycloak"
issuer_url = "https://kc.example/realms/corp"
client_id = "streamspace"
groups_claim = "groups"
default_role = "user"
[provider.groups]
"/staff" = "staff"
[provider.roles]
"/admins" = "admin"
"#,
        )?;
        let path = file.display().to_string();
        let got = parse(&["--oidc-providers", &path])?;
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].client_secret.as_deref(),
                got[0].username_claim.as_str(),
                got[0].label()
            ),
            (Some("g-secret"), "email", "Google")
        );
        assert_eq!(got[1].roles.get("/admins"), Some(&Role::Admin));
        assert_eq!(
            got[1].groups.get("/staff").map(String::as_str),
            Some("staff")
        );
        assert_eq!(got[1].client_secret, None);
        std::fs::write(
            &file,
            "[[provider]]\nid = \"x\"\nissuer_url = \"https://x\"\nclient_id = \"c\"\nclient_secret = \"inline\"\n",
        )?;
        let inline = parse(&["--oidc-providers", &path]).expect_err("inline secrets refused");
        assert!(
            format!("{inline:#}").contains("client_secret_file"),
            "{inline:#}"
        );
        std::fs::write(&file, "[[provider]]\nid = \"x\"\nissuer = \"https://x\"\n")?;
        let typo = parse(&["--oidc-providers", &path]).expect_err("unknown keys refused");
        assert!(format!("{typo:#}").contains("issuer"), "{typo:#}");
        Ok(())
    }
}
