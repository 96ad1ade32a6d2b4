//! Single sign-on over real HTTP with real providers, on both backends: the certified
//! `oidc-provider` (its login form driven like a browser would, cookies and all) for the happy
//! path, a changed group list, a provider "admin", a disabled user and a replayed state and
//! code; and a misbehaving provider for the ID tokens a certified one never issues (another
//! nonce, another key, another audience, expired, another issuer, unsigned). Every refusal must be a
//! clear JSON error, audited, and create no user.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use streamspace_proto::api::{AuditRecord, Me, Page, Role, SignInProvider, User};
use streamspace_server::{OidcProviderConfig, ServerConfig};
use streamspace_testkit::{OidcClient, OidcProvider, RogueProvider};

use crate::common::{Backend, TestServer, assert_error, fast_config, read};
use crate::on_both_backends;

on_both_backends!(
    provider_users_are_mapped_updated_and_kept_apart,
    refused_sign_ins_are_clear_and_create_no_one,
);

const CLIENT_ID: &str = "streamspace";
const CLIENT_SECRET: &str = "test-client-secret";

/// A server whose public URL is its own address, with providers made by `providers` from it.
async fn server_with(
    backend: &Backend,
    providers: impl FnOnce(&str) -> anyhow::Result<Vec<OidcProviderConfig>>,
) -> anyhow::Result<TestServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut config: ServerConfig = fast_config();
    config.tunnel.public_url = Some(base.clone());
    config.oidc = providers(&base)?;
    backend.server_on(listener, config).await
}

fn provider_config(id: &str, issuer: &str) -> OidcProviderConfig {
    let mut config = OidcProviderConfig::new(id, issuer, CLIENT_ID);
    config.client_secret = Some(CLIENT_SECRET.into());
    config.scopes = vec!["profile".into(), "email".into(), "groups".into()];
    config
}

fn callback_of(base: &str, id: &str) -> String {
    format!("{base}/api/v1/auth/oidc/{id}/callback")
}

/// A user agent that keeps cookies per origin and follows redirects by hand, so a test can
/// stop at the callback and choose what to send it.
struct Browser {
    http: reqwest::Client,
    jars: BTreeMap<String, BTreeMap<String, String>>,
}

fn origin(url: &str) -> String {
    url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/")
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Browser {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            jars: BTreeMap::new(),
        })
    }

    fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jars.get(&origin(url))?.get(name).cloned()
    }

    fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        self.jars
            .entry(origin(url))
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    fn forget(&mut self, url: &str, name: &str) {
        if let Some(jar) = self.jars.get_mut(&origin(url)) {
            jar.remove(name);
        }
    }

    async fn send(
        &mut self,
        method: Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.http.request(method, url);
        if let Some(jar) = self.jars.get(&origin(url)) {
            let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        if let Some(form) = form {
            let encoded: Vec<String> = form
                .iter()
                .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                .collect();
            request = request
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(encoded.join("&"));
        }
        let response = request.send().await.with_context(|| url.to_owned())?;
        let jar = self.jars.entry(origin(url)).or_default();
        for value in response.headers().get_all(header::SET_COOKIE) {
            let value = value.to_str()?;
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, content) = pair.split_once('=').context("a cookie without '='")?;
            if content.is_empty() || attributes.contains("Max-Age=0") {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), content.to_owned());
            }
        }
        Ok(response)
    }

    /// From `start` (a sign-in URL of the server) through the provider — signing in at its
    /// login form as `login` when it shows one — up to the provider's redirect to a callback
    /// of the server, which is returned, not followed.
    async fn sign_in_until_callback(&mut self, start: &str, login: &str) -> anyhow::Result<String> {
        let server = origin(start);
        let mut url = start.to_owned();
        for _ in 0..20 {
            let mut response = self.send(Method::GET, &url, None).await?;
            if response.status() == StatusCode::OK && url.contains("/interaction/") {
                let form = [("prompt", "login"), ("login", login), ("password", "any")];
                response = self.send(Method::POST, &url, Some(&form)).await?;
            }
            if !response.status().is_redirection() {
                bail!(
                    "{url} answered {} without a redirect: {}",
                    response.status(),
                    response.text().await?
                );
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .context("a redirect without Location")?
                .to_str()?;
            let next = reqwest::Url::parse(&url)?.join(location)?.to_string();
            if next.starts_with(&server) && next.contains("/callback") {
                return Ok(next);
            }
            url = next;
        }
        bail!("more than 20 redirects from {start}")
    }

    /// Sends the callback; returns the status, the JSON body (Null for a redirect) and the
    /// redirect's Location.
    async fn callback(&mut self, url: &str) -> anyhow::Result<(StatusCode, Value, String)> {
        let response = self.send(Method::GET, url, None).await?;
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let (status, body) = read(response).await?;
        Ok((status, body, location))
    }

    /// Who the server's session cookie signs in.
    async fn me(&mut self, s: &TestServer) -> anyhow::Result<Me> {
        let url = format!("{}/api/v1/auth/me", s.base);
        let (status, body) = read(self.send(Method::GET, &url, None).await?).await?;
        ensure!(status == StatusCode::OK, "me: {status} {body}");
        Ok(serde_json::from_value(body)?)
    }
}

/// Signs in through provider `id` as `login` with a fresh browser; returns it (signed in).
async fn sign_in(s: &TestServer, id: &str, login: &str) -> anyhow::Result<Browser> {
    let mut browser = Browser::new()?;
    let start = format!("{}/api/v1/auth/oidc/{id}/login?return_to=/sessions", s.base);
    let callback = browser.sign_in_until_callback(&start, login).await?;
    let (status, body, location) = browser.callback(&callback).await?;
    ensure!(
        status == StatusCode::FOUND && location == "/sessions",
        "signing in as {login} through {id}: {status} {body} → {location:?}"
    );
    ensure!(
        browser.cookie(&s.base, "streamspace_session").is_some(),
        "no session cookie after signing in"
    );
    Ok(browser)
}

async fn users(s: &TestServer) -> anyhow::Result<Vec<User>> {
    s.list("/api/v1/users").await
}

async fn provider_users_are_mapped_updated_and_kept_apart(backend: Backend) -> anyhow::Result<()> {
    let mut idp = None;
    let s = server_with(&backend, |base| {
        let real = OidcProvider::start(&[OidcClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uri: callback_of(base, "corp"),
        }])?;
        let mut config = provider_config("corp", &real.issuer);
        config.display_name = Some("Corporate sign-in".into());
        config.groups_claim = Some("groups".into());
        config.groups = [("staff", "staff"), ("eng", "engineering")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .into();
        config.roles = [("ops".to_owned(), Role::Operator)].into();
        idp = Some(real);
        Ok(vec![config])
    })
    .await?;
    let idp = idp.context("the provider started")?;

    let anonymous = reqwest::get(format!("{}/api/v1/auth/providers", s.base)).await?;
    let (status, listed) = read(anonymous).await?;
    ensure!(status == StatusCode::OK, "{status} {listed}");
    let listed: Vec<SignInProvider> = serde_json::from_value(listed["items"].clone())?;
    ensure!(
        listed
            == [SignInProvider {
                id: "corp".into(),
                display_name: "Corporate sign-in".into(),
                login_url: "/api/v1/auth/oidc/corp/login".into(),
            }],
        "the sign-in page lists the provider, to anyone: {listed:?}"
    );

    idp.set_account(
        "alice",
        json!({ "groups": ["staff", "ops", "unmapped"], "name": "Alice A",
                "email": "alice@corp.example" }),
    )?;
    let mut browser = Browser::new()?;
    let start = format!("{}/api/v1/auth/oidc/corp/login?return_to=/sessions", s.base);
    let first_callback = browser.sign_in_until_callback(&start, "alice").await?;
    let (status, body, location) = browser.callback(&first_callback).await?;
    ensure!(
        status == StatusCode::FOUND && location == "/sessions",
        "{status} {body} {location}"
    );
    let me = browser.me(&s).await?.user;
    ensure!(
        me.username == "alice"
            && me.display_name == "Alice A"
            && me.email.as_deref() == Some("alice@corp.example")
            && me.role == Role::Operator
            && me.groups == ["staff"]
            && !me.has_password,
        "claims mapped to the user: {me:?}"
    );
    let count = users(&s).await?.len();

    // The same callback again, even with its flow cookie back: its state was taken. The same
    // code in a fresh flow: the provider refuses a code used once.
    ensure!(
        browser.cookie(&s.base, "streamspace_oidc_state").is_none(),
        "a finished flow clears its cookie"
    );
    let param = |name: &str| {
        reqwest::Url::parse(&first_callback)?
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .with_context(|| format!("no {name} in the callback"))
    };
    let (code, first_state) = (param("code")?, param("state")?);
    browser.set_cookie(&s.base, "streamspace_oidc_state", &first_state);
    let (status, body, _) = browser.callback(&first_callback).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    assert_error(&body, "oidc_invalid_state");
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("already used")),
        "{body}"
    );
    let mut replay = Browser::new()?;
    let fresh = replay
        .send(
            Method::GET,
            &format!("{}/api/v1/auth/oidc/corp/login", s.base),
            None,
        )
        .await?;
    ensure!(fresh.status() == StatusCode::FOUND);
    let state = replay
        .cookie(&s.base, "streamspace_oidc_state")
        .context("the flow cookie")?;
    let replayed = format!("{}?code={code}&state={state}", callback_of(&s.base, "corp"));
    let (status, body, _) = replay.callback(&replayed).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {body}");
    assert_error(&body, "oidc_code_refused");
    ensure!(users(&s).await?.len() == count, "a replay creates no one");

    // A local membership stays; the provider's groups follow the provider.
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "name": "local" })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");
    let (status, body) = s
        .call(Method::PUT, "/api/v1/groups/local/members/alice", None)
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    idp.set_account("alice", json!({ "groups": ["eng"], "name": "Alice A" }))?;
    let mut again = sign_in(&s, "corp", "alice").await?;
    let me = again.me(&s).await?.user;
    ensure!(
        me.groups == ["engineering", "local"] && me.role == Role::User,
        "groups replaced, the local one kept, the role follows: {me:?}"
    );
    ensure!(
        users(&s).await?.len() == count,
        "the same subject, the same user"
    );

    // The provider's "admin" is someone else.
    let mut theirs = sign_in(&s, "corp", "admin").await?;
    let me = theirs.me(&s).await?.user;
    ensure!(
        me.username == "admin-2" && me.role == Role::User,
        "a provider's admin is a new, ordinary user: {me:?}"
    );
    let local = s.get_json::<User>("/api/v1/users/admin").await?;
    ensure!(
        local.id == streamspace_store::BOOTSTRAP_ADMIN_ID && local.role == Role::Admin,
        "{local:?}"
    );

    // A disabled user cannot sign in this way either.
    let (status, body) = s
        .call(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(json!({ "disabled": true })),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    let mut disabled = Browser::new()?;
    let callback = disabled.sign_in_until_callback(&start, "alice").await?;
    let (status, body, _) = disabled.callback(&callback).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {body}");
    assert_error(&body, "unauthorized");
    ensure!(disabled.cookie(&s.base, "streamspace_session").is_none());

    let audit = s
        .get_json::<Page<AuditRecord>>("/api/v1/audit?action=auth.oidc_login")
        .await?
        .items;
    ensure!(
        audit.len() == 3 && audit.iter().all(|a| a.detail["provider"] == "corp"),
        "each sign-in is audited with its provider: {audit:?}"
    );
    let failed = s
        .get_json::<Page<AuditRecord>>("/api/v1/audit?action=auth.oidc_login_failed")
        .await?
        .items;
    ensure!(failed.len() == 3, "each refusal is audited: {failed:?}");
    drop(idp);
    s.stop().await
}

async fn refused_sign_ins_are_clear_and_create_no_one(backend: Backend) -> anyhow::Result<()> {
    let rogue = RogueProvider::start()?;
    let flaws = [
        "good", "nonce", "otherkey", "audience", "expired", "issuer", "unsigned",
    ];
    let s = server_with(&backend, |_| {
        Ok(flaws
            .iter()
            .map(|flaw| provider_config(flaw, &rogue.issuer(flaw)))
            .collect())
    })
    .await?;

    // The misbehaving provider works when nothing is wrong: the refusals below are its flaws.
    let mut control = sign_in(&s, "good", "anyone").await?;
    ensure!(control.me(&s).await?.user.username == "rogue-good");
    let before = users(&s).await?;

    for (flaw, words) in [
        ("nonce", "nonce"),
        ("otherkey", "signature"),
        ("audience", "audience"),
        ("expired", "expired"),
        ("issuer", "issuer"),
        ("unsigned", "sign"),
    ] {
        let mut browser = Browser::new()?;
        let start = format!("{}/api/v1/auth/oidc/{flaw}/login", s.base);
        let callback = browser.sign_in_until_callback(&start, "x").await?;
        let (status, body, _) = browser.callback(&callback).await?;
        ensure!(
            status == StatusCode::UNAUTHORIZED,
            "{flaw}: {status} {body}; provider log:\n{}",
            rogue.log()
        );
        assert_error(&body, "oidc_invalid_token");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        ensure!(
            message.to_lowercase().contains(words),
            "{flaw}: the error should say what is wrong ({words}): {message}"
        );
        ensure!(browser.cookie(&s.base, "streamspace_session").is_none());
    }

    // States: made up, not this browser's, and for another provider.
    let mut browser = Browser::new()?;
    let callback = browser
        .sign_in_until_callback(&format!("{}/api/v1/auth/oidc/good/login", s.base), "x")
        .await?;
    let forged = callback_of(&s.base, "good") + "?code=abc&state=made-up";
    let (status, body, _) = browser.callback(&forged).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    assert_error(&body, "oidc_invalid_state");
    let mut forger = Browser::new()?;
    forger.set_cookie(&s.base, "streamspace_oidc_state", "made-up");
    let (status, body, _) = forger.callback(&forged).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    assert_error(&body, "oidc_invalid_state");
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown")),
        "{body}"
    );
    let mut stranger = Browser::new()?;
    let (status, body, _) = stranger.callback(&callback).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    assert_error(&body, "oidc_invalid_state");
    let elsewhere = callback.replace("/oidc/good/", "/oidc/nonce/");
    let (status, body, _) = browser.callback(&elsewhere).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    assert_error(&body, "oidc_invalid_state");
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another provider")),
        "{body}"
    );
    // A browser is sent back to the sign-in page, which says what went wrong.
    let navigating = s
        .http
        .get(&forged)
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await?;
    ensure!(
        navigating.url().path() == "/signin"
            && navigating.url().query() == Some("sso_error=oidc_invalid_state"),
        "a browser lands on the sign-in page with the code: {}",
        navigating.url()
    );
    // The provider said no.
    let mut denied = Browser::new()?;
    denied
        .send(
            Method::GET,
            &format!("{}/api/v1/auth/oidc/good/login", s.base),
            None,
        )
        .await?;
    let state = denied
        .cookie(&s.base, "streamspace_oidc_state")
        .context("the flow cookie")?;
    let refused = format!(
        "{}?error=access_denied&state={state}",
        callback_of(&s.base, "good")
    );
    let (status, body, _) = denied.callback(&refused).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{status} {body}");
    assert_error(&body, "oidc_denied");
    denied.forget(&s.base, "streamspace_oidc_state");

    // Unknown providers and return paths elsewhere.
    let (status, body) = s
        .call(Method::GET, "/api/v1/auth/oidc/nope/login", None)
        .await?;
    ensure!(status == StatusCode::NOT_FOUND, "{status} {body}");
    let outside = format!(
        "{}/api/v1/auth/oidc/good/login?return_to=//evil.example/",
        s.base
    );
    let (status, body) = read(Browser::new()?.send(Method::GET, &outside, None).await?).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");

    ensure!(
        users(&s).await? == before,
        "no refused sign-in created or changed a user"
    );
    let failed = s
        .get_json::<Page<AuditRecord>>("/api/v1/audit?action=auth.oidc_login_failed")
        .await?
        .items;
    ensure!(
        failed.len() == 12,
        "every refused callback is audited: {failed:?}"
    );
    s.stop().await
}

#[tokio::test]
async fn providers_are_checked_at_start() -> anyhow::Result<()> {
    crate::common::init();
    let db = streamspace_testkit::TestDatabase::sqlite()?;
    streamspace_store::migrate::up(db.url()).await?;
    let store = streamspace_store::open(db.url()).await?;
    let rogue = RogueProvider::start()?;
    let serve = |config: ServerConfig| {
        let store = store.clone();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let stop = shutdown.clone();
            let served = tokio::time::timeout(
                crate::common::WAIT,
                streamspace_server::serve(listener, store, config, shutdown),
            )
            .await;
            stop.cancel();
            match served {
                Ok(Err(e)) => Ok::<_, anyhow::Error>(e.to_string()),
                other => bail!("the server should refuse to start: {other:?}"),
            }
        }
    };
    let mut config = fast_config();
    config.oidc = vec![provider_config("corp", &rogue.issuer("good"))];
    let message = serve(config.clone()).await?;
    ensure!(
        message.contains("corp") && message.contains("--public-url"),
        "{message}"
    );
    config.tunnel.public_url = Some("http://127.0.0.1:1".into());
    config.oidc = vec![provider_config(
        "corp",
        &format!("{}-missing", rogue.issuer("good")),
    )];
    let message = serve(config.clone()).await?;
    ensure!(
        message.contains("corp") && message.contains("discovery"),
        "{message}"
    );
    config.oidc = vec![provider_config("Bad Id", &rogue.issuer("good"))];
    let message = serve(config).await?;
    ensure!(message.contains("Bad Id"), "{message}");
    Ok(())
}
