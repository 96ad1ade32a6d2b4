//! OpenID Connect single sign-on: the configured providers and the two halves of the
//! authorization code flow (with PKCE, state and nonce), independent of HTTP routing.
//!
//! At start, every provider's discovery document and keys are read; a provider that cannot be
//! reached, or a provider without `--public-url` to build its redirect URI from, stops the
//! server with a message naming it, so a misconfiguration shows at once rather than at the
//! first sign-in. Later, a sign-in that starts when the document is older than
//! [`REDISCOVER_AFTER`] reads it again (keeping the old one if that fails), so rotated keys
//! are picked up. The state, nonce and PKCE verifier of a flow are kept in the database by the
//! caller (`api::oidc`), so the callback may land on any replica.
//!
//! The ID token is verified by `openidconnect`: its signature against the provider's published
//! keys, its issuer, its audience (our client id), its expiry and its nonce. Only then are its
//! claims read (and only from the ID token: no userinfo request).

mod claims;
mod config;
mod http;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, TokenResponse,
};
use serde_json::Value;
use streamspace_proto::api::SignInProvider;

pub(crate) use claims::Mapped;
pub use config::{OidcProviderConfig, OidcProvidersFile};
use http::Http;

/// How old a provider's discovery document (and key set) may get before a sign-in reads it
/// again.
pub(crate) const REDISCOVER_AFTER: Duration = Duration::from_secs(15 * 60);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A provider that could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error(
        "single sign-on provider {0:?} needs --public-url (STREAMSPACE_PUBLIC_URL) to build its \
         redirect URI from"
    )]
    NoPublicUrl(String),
    #[error("single sign-on provider id {0:?} must be 1-64 lower-case letters, digits or '-'")]
    BadId(String),
    #[error("single sign-on provider {0:?} is configured twice")]
    Duplicate(String),
    #[error("single sign-on provider {id:?}: {what}")]
    Invalid { id: String, what: String },
    #[error(
        "single sign-on provider {id:?}: reading the discovery document of {issuer} failed: \
         {why}"
    )]
    Discovery {
        id: String,
        issuer: String,
        why: String,
    },
}

/// Why the second half of a flow failed; each becomes a clear API error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FlowError {
    #[error("the provider refused the authorization code: {0}")]
    CodeRefused(String),
    #[error("the provider answered no ID token")]
    NoIdToken,
    #[error("the provider's ID token was refused: {0}")]
    InvalidToken(String),
    #[error("{0}")]
    InvalidClaims(String),
}

/// The first half of a flow: where to send the browser, and what its callback must match.
pub(crate) struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A user the provider vouched for.
pub(crate) struct Verified {
    pub issuer: String,
    pub subject: String,
    pub mapped: Mapped,
}

/// One configured provider.
pub(crate) struct Provider {
    pub config: OidcProviderConfig,
    http: Http,
    redirect_uri: RedirectUrl,
    client: RwLock<(Arc<Client>, Instant)>,
}

/// Every configured provider, by id (none by default).
#[derive(Default)]
pub(crate) struct Providers {
    by_id: BTreeMap<String, Provider>,
}

impl Providers {
    /// Checks the configuration and reads every provider's discovery document.
    pub async fn discover(
        configs: &[OidcProviderConfig],
        public_url: Option<&str>,
        tls: &rustls::ClientConfig,
    ) -> Result<Self, SetupError> {
        let mut by_id = BTreeMap::new();
        for config in configs {
            let id = config.id.clone();
            if !OidcProviderConfig::valid_id(&id) {
                return Err(SetupError::BadId(id));
            }
            if by_id.contains_key(&id) {
                return Err(SetupError::Duplicate(id));
            }
            let public_url = public_url.ok_or_else(|| SetupError::NoPublicUrl(id.clone()))?;
            let redirect_uri = RedirectUrl::new(format!(
                "{}/api/v1/auth/oidc/{id}/callback",
                public_url.trim_end_matches('/')
            ))
            .map_err(|e| SetupError::Invalid {
                id: id.clone(),
                what: format!("the redirect URI from --public-url is not a URL: {e}"),
            })?;
            // One client per provider, built only when one is configured.
            let http = Http::new(tls).map_err(|e| SetupError::Invalid {
                id: id.clone(),
                what: format!("building an HTTP client: {e}"),
            })?;
            let client = discover(&http, config, &redirect_uri).await?;
            tracing::info!(provider = %id, issuer = %config.issuer_url,
                redirect_uri = %redirect_uri.as_str(), "single sign-on provider ready");
            by_id.insert(
                id,
                Provider {
                    config: config.clone(),
                    http,
                    redirect_uri,
                    client: RwLock::new((Arc::new(client), Instant::now())),
                },
            );
        }
        Ok(Self { by_id })
    }

    /// What the sign-in page shows.
    pub fn list(&self) -> Vec<SignInProvider> {
        self.by_id
            .values()
            .map(|p| SignInProvider {
                id: p.config.id.clone(),
                display_name: p.config.label().to_owned(),
                login_url: format!("/api/v1/auth/oidc/{}/login", p.config.id),
            })
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.by_id.get(id)
    }
}

impl Provider {
    /// The first half of a flow: a fresh state, nonce and PKCE verifier, and
    /// the provider's authorization URL carrying them.
    pub async fn start(&self) -> Started {
        let client = self.current().await;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        }
    }

    /// The second half: exchanges `code` (with the flow's PKCE verifier), verifies the ID
    /// token (signature, issuer, audience, expiry, nonce) and maps its claims.
    pub async fn finish(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Verified, FlowError> {
        let client = self.current().await;
        let token: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| FlowError::CodeRefused(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| FlowError::CodeRefused(token_error(&e)))?;
        let id_token = token.id_token().ok_or(FlowError::NoIdToken)?;
        let verified = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))
            .map_err(|e| FlowError::InvalidToken(error_chain(&e)))?;
        let issuer = verified.issuer().as_str().to_owned();
        let subject = verified.subject().as_str().to_owned();
        // The signature is checked: the payload's claims are the provider's word.
        let claims = payload(&id_token.to_string())
            .ok_or_else(|| FlowError::InvalidToken("its payload is not JSON".into()))?;
        let mapped = claims::map(&self.config, &claims).map_err(FlowError::InvalidClaims)?;
        Ok(Verified {
            issuer,
            subject,
            mapped,
        })
    }

    /// The client, read again from the provider's discovery document when it is old.
    async fn current(&self) -> Arc<Client> {
        let (client, since) = {
            let guard = self.client.read().unwrap_or_else(|p| p.into_inner());
            (guard.0.clone(), guard.1)
        };
        if since.elapsed() < REDISCOVER_AFTER {
            return client;
        }
        match discover(&self.http, &self.config, &self.redirect_uri).await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.client.write().unwrap_or_else(|p| p.into_inner()) =
                    (fresh.clone(), Instant::now());
                fresh
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the provider's earlier discovery document");
                client
            }
        }
    }
}

async fn discover(
    http: &Http,
    config: &OidcProviderConfig,
    redirect_uri: &RedirectUrl,
) -> Result<Client, SetupError> {
    let issuer = IssuerUrl::new(config.issuer_url.clone()).map_err(|e| SetupError::Invalid {
        id: config.id.clone(),
        what: format!("issuer_url {:?} is not a URL: {e}", config.issuer_url),
    })?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| SetupError::Discovery {
            id: config.id.clone(),
            issuer: config.issuer_url.clone(),
            why: error_chain(&e),
        })?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        config.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect_uri.clone()))
}

/// A token endpoint's refusal in words: its OAuth error code and description when it sent one.
fn token_error<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse + 'static>(
    e: &RequestTokenError<RE, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(answer) => {
            serde_json::to_string(answer).unwrap_or_else(|_| e.to_string())
        }
        other => error_chain(other),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The JSON payload of a compact JWS.
fn payload(jwt: &str) -> Option<Value> {
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
