//! A change and its audit entry commit together, over real HTTP on both backends: while the
//! audit log refuses writes, changes answer 500 and leave nothing behind; events that change
//! nothing (a failed sign-in) do not fail the request; once the log takes writes again the
//! same changes go through, each with its entry.

use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Backend, TestServer, assert_error, fast_config};
use crate::on_both_backends;

on_both_backends!(changes_fail_with_their_audit_entry);

/// Makes every insert into `audit_log` fail.
async fn refuse_audit(s: &TestServer) -> anyhow::Result<()> {
    if s.database_url().starts_with("sqlite:") {
        s.exec_sql(
            "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
        )
        .await
    } else {
        s.exec_sql(
            "CREATE FUNCTION audit_refused() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
        )
        .await?;
        s.exec_sql(
            "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_refused()",
        )
        .await
    }
}

async fn allow_audit(s: &TestServer) -> anyhow::Result<()> {
    if s.database_url().starts_with("sqlite:") {
        s.exec_sql("DROP TRIGGER audit_refused").await
    } else {
        s.exec_sql("DROP TRIGGER audit_refused ON audit_log").await
    }
}

/// The requests that change something, and where to look for what they would have made.
fn changes() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    vec![
        (
            Method::POST,
            "/api/v1/templates",
            Some(json!({ "name": "firefox", "command": ["firefox"] })),
            "/api/v1/templates/firefox",
        ),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({ "username": "carol", "role": "user" })),
            "/api/v1/users/carol",
        ),
        (
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "name": "staff" })),
            "/api/v1/groups/staff",
        ),
    ]
}

async fn changes_fail_with_their_audit_entry(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let _agent = s.agent("a1", 10).await?;
    refuse_audit(&s).await?;

    for (method, path, body, made) in changes() {
        let (status, answer) = s.call(method, path, body).await?;
        ensure!(
            status == StatusCode::INTERNAL_SERVER_ERROR,
            "{path}: {status} {answer}"
        );
        assert_error(&answer, "internal");
        let (status, answer) = s.call(Method::GET, made, None).await?;
        ensure!(
            status == StatusCode::NOT_FOUND,
            "rolled back, {made} is not there: {status} {answer}"
        );
    }
    let (status, answer) = s
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({ "template": "xterm" })),
        )
        .await?;
    ensure!(
        status == StatusCode::INTERNAL_SERVER_ERROR,
        "{status} {answer}"
    );
    let (_, sessions) = s.call(Method::GET, "/api/v1/sessions", None).await?;
    ensure!(
        sessions == json!({"items": []}),
        "no session was made: {sessions}"
    );
    let (status, answer) = s
        .call(
            Method::PATCH,
            "/api/v1/users/admin",
            Some(json!({ "display_name": "Root" })),
        )
        .await?;
    ensure!(
        status == StatusCode::INTERNAL_SERVER_ERROR,
        "{status} {answer}"
    );
    let (_, admin) = s.call(Method::GET, "/api/v1/users/admin", None).await?;
    ensure!(admin["display_name"] != "Root", "unchanged: {admin}");
    let (status, answer) = s
        .call(Method::DELETE, "/api/v1/templates/xterm", None)
        .await?;
    ensure!(
        status == StatusCode::INTERNAL_SERVER_ERROR,
        "{status} {answer}"
    );
    let (status, _) = s.call(Method::GET, "/api/v1/templates/xterm", None).await?;
    ensure!(status == StatusCode::OK, "xterm is kept");

    // A failed sign-in changes nothing: it still answers as it would.
    let wrong = json!({ "username": "admin", "password": "not-the-password" });
    let response = s
        .http
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&wrong)
        .send()
        .await?;
    ensure!(response.status() == StatusCode::UNAUTHORIZED);

    allow_audit(&s).await?;
    for (method, path, body, made) in changes() {
        let (status, answer) = s.call(method, path, body).await?;
        ensure!(status == StatusCode::CREATED, "{path}: {status} {answer}");
        let (status, _) = s.call(Method::GET, made, None).await?;
        ensure!(status == StatusCode::OK, "{made}");
    }
    let (status, page) = s
        .call(Method::GET, "/api/v1/audit?actor=admin", None)
        .await?;
    ensure!(status == StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    ensure!(
        actions
            == [
                "group.create",
                "user.create",
                "template.create",
                "agent_key.create"
            ],
        "one entry per change that went through, none for those rolled back: {page}"
    );
    s.stop().await
}
