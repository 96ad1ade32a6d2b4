//! The REST API over a socket: health, templates, agent keys, sessions and placement. The
//! error matrix is driven through the router without a socket (`crates/server/src/api/tests.rs`).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamspace_proto::api::{AgentKey, Command, Readiness, Template};
use streamspace_server::{Keys, SecretsConfig};
use streamspace_store::ApiKeyKind;
use uuid::Uuid;

use crate::common::{Backend, FakeAgent, TestServer, assert_error, fast_config, read};
use crate::on_both_backends;

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let (status, _) = read(s.http.get(format!("{}/healthz", s.base)).send().await?).await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = read(s.http.get(format!("{}/readyz", s.base)).send().await?).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ready: Readiness = serde_json::from_value(body)?;
    assert!(ready.ready);
    assert_eq!(ready.replica_id, "test");
    s.stop().await
}

#[tokio::test]
async fn readiness_is_503_json_when_the_database_is_gone() -> anyhow::Result<()> {
    let backend = Backend::postgres()?;
    let s = backend.server(fast_config()).await?;
    // Stop PostgreSQL under the running server.
    tokio::task::spawn_blocking(move || drop(backend)).await?;
    let (status, body) = read(s.http.get(format!("{}/readyz", s.base)).send().await?).await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let ready: Readiness = serde_json::from_value(body)?;
    assert!(!ready.ready);
    let (status, _) = read(s.http.get(format!("{}/healthz", s.base)).send().await?).await?;
    assert_eq!(
        status,
        StatusCode::OK,
        "liveness does not depend on the database"
    );
    Ok(())
}

#[tokio::test]
async fn templates_are_validated_and_managed() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let templates: Vec<Template> = s.list("/api/v1/templates").await?;
    assert!(
        templates
            .iter()
            .any(|t| t.name == "xterm" && t.command == ["xterm"]),
        "bootstrap seeds xterm: {templates:?}"
    );
    for bad in [
        json!({ "name": "Bad_Name", "command": ["x"] }),
        json!({ "name": "ok", "command": [] }),
        json!({ "name": "ok", "command": [""] }),
    ] {
        let (status, body) = s
            .call(Method::POST, "/api/v1/templates", Some(bad.clone()))
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} accepted: {body}");
        assert_error(&body, "bad_request");
    }
    let good =
        json!({ "name": "firefox", "command": ["firefox", "--kiosk"], "env": { "LANG": "C" } });
    let (status, body) = s
        .call(Method::POST, "/api/v1/templates", Some(good.clone()))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "firefox");
    let (status, body) = s
        .call(Method::POST, "/api/v1/templates", Some(good))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "conflict");
    let (status, _) = s
        .call(Method::DELETE, "/api/v1/templates/firefox", None)
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s
        .call(Method::DELETE, "/api/v1/templates/firefox", None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    s.stop().await
}

#[tokio::test]
async fn agent_keys_are_keyed_hashes_and_revocable() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let (status, created) = s
        .call(
            Method::POST,
            "/api/v1/agent-keys",
            Some(json!({ "agent_id": "a1" })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap_or_default().to_owned();
    assert!(
        secret.starts_with("ssk_") && secret.len() >= 40,
        "weak secret {secret:?}"
    );
    let key_id: Uuid = serde_json::from_value(created["id"].clone())?;
    assert_eq!(key_id.get_version_num(), 7, "key ids are UUIDv7");

    let (status, listed) = s.call(Method::GET, "/api/v1/agent-keys", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is listed: {listed}"
    );
    let keys: Vec<AgentKey> = serde_json::from_value(listed["items"].clone())?;
    assert!(keys.iter().any(|k| k.id == key_id && k.agent_id == "a1"));

    // Only a keyed hash is stored: the secret itself finds nothing, its HMAC does.
    assert!(
        s.store.find_api_key(&secret).await?.is_none(),
        "the secret is stored as is"
    );
    let keys = Keys::load(s.store.as_ref(), &SecretsConfig::default()).await?;
    assert_ne!(keys.credentials.mac(&secret), secret);
    let record = s.store.find_api_key(&keys.credentials.mac(&secret)).await?;
    assert_eq!(
        record.map(|r| (r.kind, r.agent_id)),
        Some((ApiKeyKind::Agent, Some("a1".into())))
    );

    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/agent-keys",
            Some(json!({ "agent_id": "bad id" })),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_request");

    // Revoking closes the live connection and refuses the next one.
    let mut agent = FakeAgent::connect(&s.ws_url, &secret, "a1", 1, vec![]).await?;
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/agent-keys/{key_id}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (code, reason) = agent.expect_close().await?;
    assert_eq!(code, 1008, "revoked key's connection closed: {reason}");
    let refused = crate::common::fake_agent::open(&s.ws_url, &secret, None).await?;
    match refused {
        Err(r) => {
            assert_eq!(r.status, 401);
            assert_error(&r.body, "unauthorized");
        }
        Ok(_) => anyhow::bail!("a revoked key was accepted"),
    }
    let unknown = format!("/api/v1/agent-keys/{}", Uuid::now_v7());
    let (status, _) = s.call(Method::DELETE, &unknown, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await
}

#[tokio::test]
async fn bootstrap_creates_credentials_and_templates_once() -> anyhow::Result<()> {
    crate::common::init();
    let db = streamspace_testkit::TestDatabase::sqlite()?;
    streamspace_store::migrate::up(db.url()).await?;
    let store = streamspace_store::open(db.url()).await?;
    let token = streamspace_server::bootstrap(store.as_ref(), None).await?;
    let token = token.ok_or_else(|| anyhow::anyhow!("no admin token generated on first start"))?;
    assert!(token.starts_with("ssa_"), "{token}");
    assert_eq!(
        streamspace_server::bootstrap(store.as_ref(), None).await?,
        None
    );
    assert_eq!(
        store.list_templates().await?.len(),
        1,
        "templates seeded once"
    );
    let keys = Keys::load(store.as_ref(), &SecretsConfig::default()).await?;
    let admin = store.find_api_key(&keys.credentials.mac(&token)).await?;
    assert_eq!(admin.map(|r| r.kind), Some(ApiKeyKind::Admin));

    let created = streamspace_server::create_agent_key(store.as_ref(), "local").await?;
    assert_eq!(created.key.agent_id, "local");
    assert!(
        streamspace_server::create_agent_key(store.as_ref(), "")
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn the_bootstrap_admin_password_is_set_only_while_there_is_none() -> anyhow::Result<()> {
    crate::common::init();
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("db").display());
    streamspace_store::migrate::up(&url).await?;
    let store = streamspace_store::open(&url).await?;
    streamspace_server::bootstrap(store.as_ref(), None).await?;
    let admin = streamspace_store::BOOTSTRAP_ADMIN_ID;
    assert!(store.get_user_by_id(admin).await?.password_hash.is_none());
    assert!(
        streamspace_server::set_bootstrap_admin_password(store.as_ref(), "short")
            .await
            .is_err(),
        "a password under 8 characters is refused"
    );
    assert!(
        streamspace_server::set_bootstrap_admin_password(store.as_ref(), "first password").await?
    );
    let hash = store.get_user_by_id(admin).await?.password_hash;
    assert!(
        hash.as_deref().is_some_and(|h| h.starts_with("$argon2id$")),
        "{hash:?}"
    );
    assert!(
        !streamspace_server::set_bootstrap_admin_password(store.as_ref(), "second password")
            .await?,
        "a password the admin has is never replaced"
    );
    assert_eq!(store.get_user_by_id(admin).await?.password_hash, hash);
    Ok(())
}

async fn sessions_have_uuid_v7_ids_and_need_a_template(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({ "template": "xterm" })),
        )
        .await?;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no agent online: {body}"
    );
    assert_error(&body, "no_capacity");

    let _agent = s.agent("a1", 4).await?;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({ "template": "nope" })),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    let session = s.create_session("xterm").await?;
    assert_eq!(session.id.get_version_num(), 7, "session ids are UUIDv7");
    assert_eq!(session.owner, "admin");
    let commands: Vec<Command> = s
        .list(&format!("/api/v1/commands?session_id={}", session.id))
        .await?;
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(
        commands[0].command_id.get_version_num(),
        7,
        "command ids are UUIDv7"
    );
    let listed: Vec<Value> = s.list("/api/v1/sessions").await?;
    assert_eq!(listed.len(), 1);
    let on_a1: Vec<Value> = s.list("/api/v1/sessions?agent_id=a1").await?;
    assert_eq!(on_a1.len(), 1, "the session is on a1");
    let elsewhere: Vec<Value> = s.list("/api/v1/sessions?agent_id=a2").await?;
    assert!(elsewhere.is_empty(), "agent filter: {elsewhere:?}");
    s.stop().await
}

async fn capacity_is_enforced(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let _agent = s.agent("small", 1).await?;
    s.create_session("xterm").await?;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({ "template": "xterm" })),
        )
        .await?;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "second session placed: {body}"
    );
    assert_error(&body, "no_capacity");
    s.stop().await
}

/// The agents listing is paged by the database: in id order, each page starting after the
/// last one's cursor, with no cursor after the last page; a bad cursor is a 400.
async fn agents_are_listed_in_pages(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let mut agents = Vec::new();
    for id in ["c3", "a1", "b2"] {
        agents.push(s.agent(id, 1).await?);
    }
    let (status, first) = s.call(Method::GET, "/api/v1/agents?limit=2", None).await?;
    assert_eq!(status, StatusCode::OK, "{first}");
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["agent_id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(ids(&first), ["a1", "b2"], "{first}");
    let cursor = first["next_cursor"].as_str().expect("a next cursor");
    let (status, second) = s
        .call(
            Method::GET,
            &format!("/api/v1/agents?limit=2&cursor={cursor}"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(ids(&second), ["c3"], "{second}");
    assert!(second["next_cursor"].is_null(), "the last page: {second}");
    assert_eq!(second["items"][0]["status"], "online", "{second}");
    // Not base64, and a NUL (`AA`), which PostgreSQL would refuse in text: both 400.
    for cursor in ["%25%25", "AA"] {
        let (status, body) = s
            .call(
                Method::GET,
                &format!("/api/v1/agents?cursor={cursor}"),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{cursor}: {body}");
        assert_error(&body, "bad_request");
    }
    drop(agents);
    s.stop().await
}

on_both_backends!(
    sessions_have_uuid_v7_ids_and_need_a_template,
    capacity_is_enforced,
    agents_are_listed_in_pages,
);

#[tokio::test]
async fn deleting_an_agent_needs_it_idle_and_disconnects_it() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let key = s.agent_key("a1").await?;
    let mut agent = FakeAgent::connect(&s.ws_url, &key, "a1", 1, vec![]).await?;
    let session = s.create_session("xterm").await?;
    agent
        .run_next(streamspace_proto::api::Action::StartSession)
        .await?;
    s.wait_session_state(session.id, streamspace_proto::api::SessionState::Running)
        .await?;
    let (status, body) = s.call(Method::DELETE, "/api/v1/agents/a1", None).await?;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "deleted with a live session: {body}"
    );
    assert_error(&body, "conflict");

    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{}", session.id),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    agent
        .run_next(streamspace_proto::api::Action::StopSession)
        .await?;
    s.wait_session_state(session.id, streamspace_proto::api::SessionState::Terminated)
        .await?;

    let (status, body) = s.call(Method::DELETE, "/api/v1/agents/a1", None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (code, _) = agent.expect_close().await?;
    assert_eq!(code, 1008, "a deleted agent's connection is closed");
    match crate::common::fake_agent::open(&s.ws_url, &key, None).await? {
        Err(refused) => assert_eq!(refused.status, 401, "its keys are revoked"),
        Ok(_) => anyhow::bail!("a deleted agent's key still connects"),
    }
    s.stop().await
}
