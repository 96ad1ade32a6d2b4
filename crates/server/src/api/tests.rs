//! The API's error matrix, driven through the router with `oneshot` — no socket, no server
//! task: every refusal is JSON `{"error":{"code","message"}}` with the right status, on both
//! backends (the 404s come from the store).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use streamspace_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::keyring::{Keys, SecretsConfig};

const ADMIN_TOKEN: &str = "ssa_oneshot_admin_token_0123456789abcdef";
/// The request body limit of the router under test.
const MAX_BODY: usize = 1024;

/// A router over a migrated, bootstrapped database at `url`, and an agent key of agent `a1`.
pub(super) async fn routes(url: &str) -> anyhow::Result<(Router, String)> {
    streamspace_store::migrate::up(url).await?;
    let store: Arc<dyn Store> = streamspace_store::open(url).await?;
    let secrets = SecretsConfig::default();
    crate::bootstrap::run(store.as_ref(), &secrets, Some(ADMIN_TOKEN), |_| Ok(())).await?;
    let keys = Arc::new(Keys::load(store.as_ref(), &secrets).await?);
    let agent_key =
        crate::keys::create_agent_key_with(store.as_ref(), &keys.credentials, "a1", |id| {
            streamspace_store::AuditEntry::system("agent_key.create", id.to_string(), json!({}))
        })
        .await?
        .secret;
    let config = Arc::new(ServerConfig {
        replica_id: "oneshot".into(),
        max_body_bytes: MAX_BODY,
        ..ServerConfig::default()
    });
    let replica = Arc::new(crate::cluster::ReplicaInfo {
        id: config.replica_id.clone(),
        address: "127.0.0.1:1".into(),
        tls: false,
        started_at: chrono::Utc::now(),
    });
    let (state, _events) = crate::state::assemble(
        store,
        config,
        keys,
        Default::default(),
        replica,
        CancellationToken::new(),
        &TaskTracker::new(),
    )?;
    Ok((super::router(state), agent_key))
}

/// One request of the matrix and the answer it must get.
struct Case<'a> {
    method: Method,
    path: String,
    token: Option<&'a str>,
    /// `Content-Type` and body.
    body: Option<(&'a str, String)>,
    status: StatusCode,
    code: &'a str,
}

impl<'a> Case<'a> {
    fn new(method: Method, path: impl Into<String>, token: Option<&'a str>) -> Self {
        Self {
            method,
            path: path.into(),
            token,
            body: None,
            status: StatusCode::OK,
            code: "",
        }
    }

    fn admin(method: Method, path: impl Into<String>) -> Self {
        Self::new(method, path, Some(ADMIN_TOKEN))
    }

    fn body(mut self, content_type: &'a str, body: impl Into<String>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }

    fn answers(mut self, status: StatusCode, code: &'a str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    fn request(&self) -> anyhow::Result<Request<Body>> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.path);
        if let Some(token) = self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        Ok(match &self.body {
            Some((content_type, body)) => {
                if !content_type.is_empty() {
                    request = request.header(header::CONTENT_TYPE, *content_type);
                }
                request.body(Body::from(body.clone()))?
            }
            None => request.body(Body::empty())?,
        })
    }
}

fn matrix(agent_key: &str) -> Vec<Case<'_>> {
    let json = "application/json";
    let mut cases = vec![
        // Outside /api/, extension-less paths are the web UI's pages; a missing file is a 404.
        Case::new(Method::GET, "/nope.js", None).answers(StatusCode::NOT_FOUND, "not_found"),
        Case::admin(Method::GET, "/api/v1/nope").answers(StatusCode::NOT_FOUND, "not_found"),
        Case::admin(Method::PUT, "/api/v1/sessions")
            .answers(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        Case::new(Method::GET, "/api/v1/sessions", None)
            .answers(StatusCode::UNAUTHORIZED, "unauthorized"),
        Case::new(Method::GET, "/api/v1/sessions", Some("ssa_wrong"))
            .answers(StatusCode::UNAUTHORIZED, "unauthorized"),
        // An agent key is no user's credential.
        Case::new(Method::GET, "/api/v1/sessions", Some(agent_key))
            .answers(StatusCode::UNAUTHORIZED, "unauthorized"),
        Case::admin(Method::POST, "/api/v1/sessions")
            .body(json, "{not json")
            .answers(StatusCode::BAD_REQUEST, "bad_request"),
        Case::admin(Method::POST, "/api/v1/sessions")
            .body(json, r#"{"tmpl":"x"}"#)
            .answers(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        Case::admin(Method::POST, "/api/v1/sessions")
            .body("", r#"{"template":"xterm"}"#)
            .answers(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        Case::admin(Method::POST, "/api/v1/sessions")
            .body(
                json,
                format!(r#"{{"template":"{}"}}"#, "x".repeat(4 * MAX_BODY)),
            )
            .answers(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Case::admin(Method::GET, "/api/v1/sessions/not-a-uuid")
            .answers(StatusCode::BAD_REQUEST, "bad_request"),
        Case::admin(Method::GET, format!("/api/v1/sessions/{}", Uuid::now_v7()))
            .answers(StatusCode::NOT_FOUND, "not_found"),
        Case::admin(Method::GET, "/api/v1/agents/nobody")
            .answers(StatusCode::NOT_FOUND, "not_found"),
        Case::admin(Method::GET, format!("/api/v1/commands/{}", Uuid::now_v7()))
            .answers(StatusCode::NOT_FOUND, "not_found"),
    ];
    for query in [
        "status=bogus",
        "limit=0",
        "limit=1001",
        "limit=abc",
        "cursor=not-one-of-ours",
        "unknown=1",
        "session_id=x",
    ] {
        cases.push(
            Case::admin(Method::GET, format!("/api/v1/commands?{query}"))
                .answers(StatusCode::BAD_REQUEST, "bad_request"),
        );
    }
    cases
}

async fn errors_are_json(url: &str) -> anyhow::Result<()> {
    let (router, agent_key) = routes(url).await?;
    for case in matrix(&agent_key) {
        let what = format!("{} {}", case.method, case.path);
        let response = router.clone().oneshot(case.request()?).await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        anyhow::ensure!(
            status == case.status && body["error"]["code"] == case.code,
            "{what}: answered {status} {body}; expected {} {:?}",
            case.status,
            case.code
        );
        anyhow::ensure!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: an error without a message: {body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn api_errors_are_json_on_sqlite() -> anyhow::Result<()> {
    let db = streamspace_testkit::TestDatabase::sqlite()?;
    errors_are_json(db.url()).await
}

#[tokio::test]
async fn api_errors_are_json_on_postgres() -> anyhow::Result<()> {
    let cluster = streamspace_testkit::PgCluster::start()?;
    let db = streamspace_testkit::TestDatabase::postgres(&cluster)?;
    errors_are_json(db.url()).await
}
