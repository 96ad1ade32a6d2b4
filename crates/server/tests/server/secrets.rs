//! Keys per purpose as an operator relies on them: credentials stored before keys had purposes
//! keep working (and are re-hashed on use), one-time-code secrets are sealed at start, and a
//! master secret kept in a file can be rotated without cutting anyone off who signs in during
//! the grace period.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use streamspace_client::Client;
use streamspace_proto::api::CreateToken;
use streamspace_server::{Keys, MASTER_SECRET_SETTING, MasterSecret, SecretsConfig, ServerConfig};
use streamspace_store::{ApiKeyKind, AuditEntry, BOOTSTRAP_ADMIN_ID, NewApiKey, Store};
use streamspace_testkit::{TestDatabase, wait_until};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{ADMIN_TOKEN, TestServer, WAIT, fast_config, init};

const TOTP_SECRET: &str = "JBSWY3DPEHPK3PXP";

fn audit() -> AuditEntry {
    AuditEntry::system("test", "x", serde_json::json!({}))
}

/// Stores `secret` as a credential of `kind` for the bootstrap admin, hashed as `hash`.
async fn store_credential(
    store: &dyn Store,
    kind: ApiKeyKind,
    secret: &str,
    hash: String,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    store
        .create_api_key(
            NewApiKey {
                id,
                kind,
                user_id: Some(BOOTSTRAP_ADMIN_ID),
                name: format!("old {}", kind.as_str()),
                prefix: secret.chars().take(12).collect(),
                key_hash: hash,
                ..NewApiKey::default()
            },
            &audit(),
        )
        .await?;
    Ok(id)
}

/// A token, a browser session and an agent key stored by an earlier version — hashed with the
/// database's secret itself — still work, and are then stored under their purposes' keys.
#[tokio::test]
async fn credentials_hashed_with_the_old_single_secret_keep_working() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let master = s
        .store
        .setting_get_or_init(MASTER_SECRET_SETTING, "not used: it exists")
        .await?;
    let keys = Keys::derive(&MasterSecret::new(master.clone()), None);
    // What every hash was before keys had purposes: HMAC-SHA256 keyed with the secret itself.
    let legacy = |secret: &str| keys.credentials.older_macs(secret)[0].clone();
    let (token, cookie) = ("ssp_an-old-personal-token", "ssb_an-old-browser-session");
    assert_eq!(legacy(cookie), keys.sessions.older_macs(cookie)[0]);
    store_credential(s.store.as_ref(), ApiKeyKind::User, token, legacy(token)).await?;
    store_credential(
        s.store.as_ref(),
        ApiKeyKind::Browser,
        cookie,
        legacy(cookie),
    )
    .await?;

    let me = Client::new(&s.base, token)?.me().await;
    assert!(me.is_ok(), "an old-style token was refused: {me:?}");
    let with_cookie = s
        .http
        .get(format!("{}/api/v1/auth/me", s.base))
        .header("cookie", format!("streamspace_session={cookie}"))
        .send()
        .await?;
    assert_eq!(
        with_cookie.status(),
        200,
        "an old-style browser session was refused"
    );

    for (secret, kind, current) in [
        (token, ApiKeyKind::User, keys.credentials.mac(token)),
        (cookie, ApiKeyKind::Browser, keys.sessions.mac(cookie)),
    ] {
        assert!(
            s.store.find_api_key(&legacy(secret)).await?.is_none(),
            "the {kind:?} credential is still stored under the old hash"
        );
        let found = s.store.find_api_key(&current).await?;
        assert_eq!(
            found.map(|r| r.kind),
            Some(kind),
            "not re-hashed under its purpose's key"
        );
    }
    let again = Client::new(&s.base, token)?.me().await;
    assert!(again.is_ok(), "refused once re-hashed: {again:?}");

    // An agent key of an earlier version still connects its agent.
    let agent_key = "ssk_an-old-agent-key";
    let id = Uuid::now_v7();
    s.store
        .create_api_key(
            NewApiKey {
                id,
                kind: ApiKeyKind::Agent,
                agent_id: Some("old-agent".into()),
                name: String::new(),
                prefix: agent_key.chars().take(12).collect(),
                key_hash: legacy(agent_key),
                ..NewApiKey::default()
            },
            &audit(),
        )
        .await?;
    let mut request = s.ws_url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {agent_key}").parse()?);
    let connected = tokio_tungstenite::connect_async(request).await;
    assert!(
        connected.is_ok(),
        "an old-style agent key was refused: {:?}",
        connected.err()
    );
    let found = s
        .store
        .find_api_key(&keys.credentials.mac(agent_key))
        .await?;
    assert_eq!(
        found.map(|r| r.id),
        Some(id),
        "the agent key was not re-hashed"
    );
    s.stop().await
}

/// One replica process on `store`, with its master secret where `secrets` says.
struct Replica {
    base: String,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), streamspace_server::ServerError>>,
}

impl Replica {
    async fn start(store: Arc<dyn Store>, secrets: SecretsConfig) -> anyhow::Result<Self> {
        streamspace_server::bootstrap_saving(store.as_ref(), &secrets, Some(ADMIN_TOKEN), |_| {
            Ok(())
        })
        .await
        .context("bootstrap")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shutdown = CancellationToken::new();
        let config = ServerConfig {
            secrets,
            ..fast_config()
        };
        let handle = tokio::spawn(streamspace_server::serve(
            listener,
            store,
            config,
            shutdown.clone(),
        ));
        let ready = format!("{base}/readyz");
        wait_until("the replica to be ready", WAIT, || {
            let ready = ready.clone();
            async move {
                let response = reqwest::get(&ready).await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await?;
        Ok(Self {
            base,
            shutdown,
            handle,
        })
    }

    async fn works(&self, token: &str) -> bool {
        match Client::new(&self.base, token) {
            Ok(client) => client.me().await.is_ok(),
            Err(_) => false,
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("the replica did not stop")???;
        Ok(())
    }
}

fn secret_file(dir: &std::path::Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("{}\n", hex::encode(rand::random::<[u8; 32]>())),
    )?;
    Ok(path)
}

/// Rotating a master secret kept in a file: with the previous one given, credentials made
/// under it keep working and are re-hashed under the new one on use, and one-time-code secrets
/// are sealed again; once the previous one is dropped, what was used during the grace period
/// works and what was not is refused.
#[tokio::test]
async fn a_master_secret_in_a_file_rotates_with_a_grace_period() -> anyhow::Result<()> {
    init();
    let dir = tempfile::tempdir()?;
    let (old, new) = (
        secret_file(dir.path(), "old")?,
        secret_file(dir.path(), "new")?,
    );
    let db = TestDatabase::sqlite()?;
    streamspace_store::migrate::up(db.url()).await?;
    let store = streamspace_store::open(db.url()).await?;
    // A one-time-code secret stored in plain text, as versions before sealing did.
    store
        .start_totp(BOOTSTRAP_ADMIN_ID, TOTP_SECRET, &audit())
        .await?;

    let before = SecretsConfig {
        master_secret_file: Some(old.clone()),
        previous_master_secret_file: None,
    };
    let replica = Replica::start(store.clone(), before).await?;
    let admin = Client::new(&replica.base, ADMIN_TOKEN)?;
    let mut tokens = Vec::new();
    for name in ["used", "unused"] {
        let request = CreateToken {
            name: name.into(),
            ..CreateToken::default()
        };
        tokens.push(admin.create_token(&request).await?.token);
    }
    let (used, unused) = (tokens[0].clone(), tokens[1].clone());
    assert!(replica.works(&used).await);
    replica.stop().await?;
    let old_keys = Keys::derive(&MasterSecret::from_file(&old)?, None);
    let stored = store.totp_secrets().await?;
    assert!(
        !stored[0].1.contains(TOTP_SECRET),
        "a plain one-time-code secret was left readable: {stored:?}"
    );
    assert_eq!(
        old_keys.totp.open(BOOTSTRAP_ADMIN_ID, &stored[0].1)?.secret,
        TOTP_SECRET
    );
    assert!(
        store
            .setting_get_or_init(MASTER_SECRET_SETTING, "absent")
            .await?
            == "absent",
        "a master secret from a file must not be written to the database"
    );

    let during = SecretsConfig {
        master_secret_file: Some(new.clone()),
        previous_master_secret_file: Some(old.clone()),
    };
    let replica = Replica::start(store.clone(), during).await?;
    assert!(
        replica.works(&used).await,
        "a token made under the previous secret was refused during the grace period"
    );
    assert!(replica.works(ADMIN_TOKEN).await);
    replica.stop().await?;
    let new_keys = Keys::derive(&MasterSecret::from_file(&new)?, None);
    let stored = store.totp_secrets().await?;
    assert_eq!(
        new_keys.totp.open(BOOTSTRAP_ADMIN_ID, &stored[0].1)?,
        streamspace_server::OpenedSecret {
            secret: TOTP_SECRET.into(),
            reseal: false
        },
        "the one-time-code secret was not sealed under the new key"
    );

    let after = SecretsConfig {
        master_secret_file: Some(new),
        previous_master_secret_file: None,
    };
    let replica = Replica::start(store.clone(), after).await?;
    assert!(
        replica.works(&used).await,
        "a token used during the grace period was not re-hashed"
    );
    assert!(replica.works(ADMIN_TOKEN).await);
    assert!(
        !replica.works(&unused).await,
        "a token made under a dropped secret and never re-hashed must be refused"
    );
    replica.stop().await
}
