//! Who may do what, over real HTTP on both backends: every user-facing route × every role ×
//! own/other resource → the status the policy promises; signing in and out with a password
//! and a cookie; disabled users and revoked tokens; the last admin; sign-in throttling.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use streamspace_proto::api::{LoginResponse, Session};

use crate::common::{ADMIN_TOKEN, Backend, TestServer, assert_error, fast_config, read};
use crate::on_both_backends;

on_both_backends!(
    role_route_matrix,
    password_sign_in_cookies_and_sign_out,
    disabled_users_and_revoked_tokens_stop_at_once,
    the_last_admin_stays,
    the_audit_log_names_who_did_what_and_pages,
    deleting_a_user_stops_their_sessions_and_keeps_the_record,
);

pub(crate) const PASSWORD: &str = "correct horse battery";

/// Sends a request with `token` (or none).
pub(crate) async fn call(
    s: &TestServer,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = s.http.request(method, format!("{}{path}", s.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await?).await
}

/// Creates a user with [`PASSWORD`] and signs in, asking for an API token; returns the token.
pub(crate) async fn user_token(
    s: &TestServer,
    username: &str,
    role: &str,
) -> anyhow::Result<String> {
    let body = json!({ "username": username, "role": role, "password": PASSWORD });
    let (status, created) = s.call(Method::POST, "/api/v1/users", Some(body)).await?;
    ensure!(
        status == StatusCode::CREATED,
        "creating {username}: {created}"
    );
    let login = json!({ "username": username, "password": PASSWORD, "token_name": "tests" });
    let (status, body) = call(s, None, Method::POST, "/api/v1/auth/login", Some(login)).await?;
    ensure!(status == StatusCode::OK, "signing in as {username}: {body}");
    let answer: LoginResponse = serde_json::from_value(body)?;
    ensure!(answer.user.username == username && answer.user.has_password);
    Ok(answer
        .token
        .context("no token in the sign-in answer")?
        .token)
}

pub(crate) async fn create_session(
    s: &TestServer,
    token: &str,
    template: &str,
) -> anyhow::Result<Session> {
    let body = json!({ "template": template });
    let (status, body) = call(s, Some(token), Method::POST, "/api/v1/sessions", Some(body)).await?;
    ensure!(status == StatusCode::CREATED, "creating a session: {body}");
    Ok(serde_json::from_value(body)?)
}

async fn role_route_matrix(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let _agent = s.agent("a1", 100).await?;
    let operator = user_token(&s, "olga", "operator").await?;
    let alice = user_token(&s, "alice", "user").await?;
    let bob = user_token(&s, "bob", "user").await?;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/groups",
            Some(json!({ "name": "staff" })),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");
    let (status, body) = s
        .call(Method::PUT, "/api/v1/groups/staff/members/alice", None)
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    let staff_only =
        json!({ "name": "staff-only", "command": ["xterm"], "allowed_groups": ["staff"] });
    let (status, body) = s
        .call(Method::POST, "/api/v1/templates", Some(staff_only))
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");

    let a = create_session(&s, &alice, "xterm").await?;
    let b = create_session(&s, &bob, "xterm").await?;
    ensure!(a.owner == "alice" && b.owner == "bob", "{a:?} {b:?}");
    ensure!(
        a.vnc_address.is_none(),
        "users never see the agent host's address"
    );
    let a_start = s
        .list::<streamspace_proto::api::Command>(&format!("/api/v1/commands?session_id={}", a.id))
        .await?
        .first()
        .context("alice's session has a start command")?
        .command_id;

    // A recording of bob watching alice's session (still going on: its stream is not readable).
    let alice_id = a.owner_id.context("alice's session has an owner id")?;
    let recording = s
        .store
        .create_recording(
            &streamspace_store::NewRecording {
                id: uuid::Uuid::now_v7(),
                session_id: a.id,
                owner_id: Some(alice_id),
                viewer_id: alice_id,
                viewer: "alice".into(),
                storage_key: "matrix/one.ssrec".into(),
            },
            &streamspace_store::AuditEntry::system("recording.create", "matrix", json!({})),
        )
        .await?
        .id;
    let missing = uuid::Uuid::now_v7();
    // A link to alice's session for the staff group (alice is in it, bob is not).
    let share = json!({ "mode": "view_only", "groups": ["staff"] });
    let (status, body) = call(
        &s,
        Some(&alice),
        Method::POST,
        &format!("/api/v1/sessions/{}/shares", a.id),
        Some(share),
    )
    .await?;
    ensure!(
        status == StatusCode::CREATED,
        "alice shares her session: {body}"
    );
    let a_share = body["id"].as_str().context("a share id")?.to_owned();
    let nobody = uuid::Uuid::now_v7();

    let tokens = BTreeMap::from([
        ("admin", ADMIN_TOKEN.to_owned()),
        ("operator", operator),
        ("owner", alice),
        ("other", bob),
    ]);
    use StatusCode as S;
    const OK: S = S::OK;
    const CREATED: S = S::CREATED;
    const ACCEPTED: S = S::ACCEPTED;
    const GONE: S = S::NOT_FOUND;
    const NO: S = S::FORBIDDEN;
    const CONFLICT: S = S::CONFLICT;
    const BAD: S = S::BAD_REQUEST;
    // (method, path, body, [admin, operator, owner (alice), other user (bob)])
    let a_id = a.id;
    let b_id = b.id;
    let rows: Vec<(Method, String, Option<Value>, [S; 4])> = vec![
        (
            Method::GET,
            "/api/v1/sessions".into(),
            None,
            [OK, OK, OK, OK],
        ),
        (
            Method::GET,
            format!("/api/v1/sessions/{a_id}"),
            None,
            [OK, OK, OK, GONE],
        ),
        // Pending sessions cannot hibernate or take viewers: 409 means "allowed, but not now".
        (
            Method::POST,
            format!("/api/v1/sessions/{a_id}/hibernate"),
            None,
            [CONFLICT, CONFLICT, CONFLICT, GONE],
        ),
        (
            Method::POST,
            format!("/api/v1/sessions/{a_id}/wake"),
            None,
            [CONFLICT, CONFLICT, CONFLICT, GONE],
        ),
        (
            Method::POST,
            format!("/api/v1/sessions/{a_id}/connect"),
            None,
            [CONFLICT, CONFLICT, CONFLICT, GONE],
        ),
        // Recordings: the session's owner and admins only; operators see the session but not
        // what its viewers were shown.
        (
            Method::GET,
            format!("/api/v1/sessions/{a_id}/recordings"),
            None,
            [OK, NO, OK, GONE],
        ),
        (
            Method::GET,
            format!("/api/v1/recordings/{recording}"),
            None,
            [OK, GONE, OK, GONE],
        ),
        (
            Method::GET,
            format!("/api/v1/recordings/{recording}/data"),
            None,
            [CONFLICT, GONE, CONFLICT, GONE],
        ),
        (
            Method::DELETE,
            format!("/api/v1/recordings/{missing}"),
            None,
            [GONE, GONE, GONE, GONE],
        ),
        // Sharing is the owner's (and operators'); a link opens for whom it names, and only
        // while the session runs.
        (
            Method::POST,
            format!("/api/v1/sessions/{a_id}/shares"),
            Some(json!({"mode": "control", "expires_in_secs": 600})),
            [CREATED, CREATED, CREATED, GONE],
        ),
        (
            Method::GET,
            format!("/api/v1/sessions/{a_id}/shares"),
            None,
            [OK, OK, OK, GONE],
        ),
        (
            Method::POST,
            format!("/api/v1/shares/{a_share}/connect"),
            None,
            [CONFLICT, CONFLICT, CONFLICT, NO],
        ),
        (
            Method::GET,
            format!("/api/v1/sessions/{a_id}/viewers"),
            None,
            [OK, OK, OK, GONE],
        ),
        (
            Method::DELETE,
            format!("/api/v1/sessions/{a_id}/viewers/{nobody}"),
            None,
            [GONE, GONE, GONE, GONE],
        ),
        (
            Method::DELETE,
            format!("/api/v1/sessions/{a_id}/shares/{a_share}"),
            None,
            [OK, OK, OK, GONE],
        ),
        (
            Method::POST,
            format!("/api/v1/shares/{a_share}/connect"),
            None,
            [NO, NO, NO, NO],
        ),
        // Files travel only in running sessions: 409 again means "allowed, but not now".
        (
            Method::GET,
            format!("/api/v1/sessions/{a_id}/files"),
            None,
            [CONFLICT, CONFLICT, CONFLICT, GONE],
        ),
        (
            Method::PUT,
            format!("/api/v1/sessions/{a_id}/files/notes.txt"),
            Some(json!("text")),
            [CONFLICT, CONFLICT, CONFLICT, GONE],
        ),
        (
            Method::GET,
            format!("/api/v1/sessions/{a_id}/files/notes.txt"),
            None,
            [CONFLICT, CONFLICT, CONFLICT, GONE],
        ),
        (
            Method::GET,
            format!("/api/v1/sessions/{a_id}/rules"),
            None,
            [OK, OK, OK, GONE],
        ),
        (
            Method::GET,
            format!("/api/v1/commands/{a_start}"),
            None,
            [OK, OK, OK, GONE],
        ),
        (
            Method::GET,
            "/api/v1/commands".into(),
            None,
            [OK, OK, OK, OK],
        ),
        // A template of groups one is not in is not in one's catalog: launching it is a 404.
        (
            Method::POST,
            "/api/v1/sessions".into(),
            Some(json!({"template": "staff-only"})),
            [CREATED, CREATED, CREATED, GONE],
        ),
        (
            Method::GET,
            "/api/v1/templates/staff-only".into(),
            None,
            [OK, OK, OK, GONE],
        ),
        (
            Method::GET,
            "/api/v1/templates".into(),
            None,
            [OK, OK, OK, OK],
        ),
        (
            Method::POST,
            "/api/v1/templates".into(),
            Some(json!({"name": "t-new", "command": ["xterm"]})),
            [CREATED, CONFLICT, NO, NO],
        ),
        (
            Method::DELETE,
            "/api/v1/templates/missing".into(),
            None,
            [GONE, GONE, NO, NO],
        ),
        (
            Method::PATCH,
            "/api/v1/templates/staff-only".into(),
            Some(json!({"description": "edited", "allowed_groups": ["staff"]})),
            [OK, OK, NO, NO],
        ),
        (
            Method::PATCH,
            "/api/v1/templates/missing".into(),
            Some(json!({"description": "edited"})),
            [GONE, GONE, NO, NO],
        ),
        (Method::GET, "/api/v1/agents".into(), None, [OK, OK, NO, NO]),
        (
            Method::GET,
            "/api/v1/agents/a1".into(),
            None,
            [OK, OK, NO, NO],
        ),
        (
            Method::POST,
            "/api/v1/agents/a1/ping".into(),
            None,
            [ACCEPTED, ACCEPTED, NO, NO],
        ),
        (
            Method::GET,
            "/api/v1/agent-keys".into(),
            None,
            [OK, OK, NO, NO],
        ),
        (
            Method::POST,
            "/api/v1/agent-keys".into(),
            Some(json!({"agent_id": "x1"})),
            [CREATED, CREATED, NO, NO],
        ),
        (
            Method::GET,
            "/api/v1/replicas".into(),
            None,
            [OK, OK, NO, NO],
        ),
        (
            Method::GET,
            "/api/v1/overview".into(),
            None,
            [OK, OK, NO, NO],
        ),
        (Method::GET, "/api/v1/users".into(), None, [OK, NO, NO, NO]),
        (
            Method::GET,
            "/api/v1/users/alice".into(),
            None,
            [OK, NO, NO, NO],
        ),
        (
            Method::PATCH,
            "/api/v1/users/bob".into(),
            Some(json!({"display_name": "Bob"})),
            [OK, NO, NO, NO],
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"username": "carol"})),
            [CREATED, NO, NO, NO],
        ),
        (Method::GET, "/api/v1/groups".into(), None, [OK, NO, NO, NO]),
        (
            Method::POST,
            "/api/v1/groups".into(),
            Some(json!({"name": "g2"})),
            [CREATED, NO, NO, NO],
        ),
        (
            Method::PUT,
            "/api/v1/groups/g2/members/carol".into(),
            None,
            [OK, NO, NO, NO],
        ),
        (
            Method::GET,
            "/api/v1/users/alice/quota".into(),
            None,
            [OK, NO, NO, NO],
        ),
        (
            Method::PUT,
            "/api/v1/users/bob/quota".into(),
            Some(json!({"max_sessions": 50})),
            [OK, NO, NO, NO],
        ),
        (
            Method::GET,
            "/api/v1/groups/staff/quota".into(),
            None,
            [OK, NO, NO, NO],
        ),
        (
            Method::PUT,
            "/api/v1/groups/staff/quota".into(),
            Some(json!({"max_cpu_millis": null})),
            [OK, NO, NO, NO],
        ),
        (
            Method::GET,
            "/api/v1/groups/staff/rules".into(),
            None,
            [OK, NO, NO, NO],
        ),
        (
            Method::PUT,
            "/api/v1/groups/staff/rules".into(),
            Some(json!({"clipboard": "to_session"})),
            [OK, NO, NO, NO],
        ),
        (Method::GET, "/api/v1/tokens".into(), None, [OK, OK, OK, OK]),
        (
            Method::GET,
            "/api/v1/tokens?user=alice".into(),
            None,
            [OK, GONE, OK, GONE],
        ),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "ci", "user": "alice"})),
            [CREATED, GONE, CREATED, GONE],
        ),
        (Method::GET, "/api/v1/audit".into(), None, [OK, OK, OK, OK]),
        // Single sign-on: the provider list is public; no provider is configured here.
        (
            Method::GET,
            "/api/v1/auth/providers".into(),
            None,
            [OK, OK, OK, OK],
        ),
        (
            Method::GET,
            "/api/v1/auth/oidc/none/login".into(),
            None,
            [GONE, GONE, GONE, GONE],
        ),
        (
            Method::GET,
            "/api/v1/auth/oidc/none/callback?state=s&code=c".into(),
            None,
            [GONE, GONE, GONE, GONE],
        ),
        (
            Method::GET,
            "/api/v1/auth/me".into(),
            None,
            [OK, OK, OK, OK],
        ),
        // Everyone may turn one-time codes on and off for their own account; the bootstrap
        // admin has no password, so cannot (400), and its confirm finds nothing pending (409).
        (
            Method::POST,
            "/api/v1/auth/totp".into(),
            None,
            [BAD, OK, OK, OK],
        ),
        (
            Method::POST,
            "/api/v1/auth/totp/confirm".into(),
            Some(json!({"code": "not a code"})),
            [CONFLICT, BAD, BAD, BAD],
        ),
        (
            Method::DELETE,
            "/api/v1/auth/totp".into(),
            Some(json!({"password": PASSWORD})),
            [S::UNAUTHORIZED, S::NO_CONTENT, S::NO_CONTENT, S::NO_CONTENT],
        ),
        // Stopping: the owner and operators may; the other user is told it does not exist.
        (
            Method::DELETE,
            format!("/api/v1/sessions/{b_id}"),
            None,
            [ACCEPTED, ACCEPTED, GONE, ACCEPTED],
        ),
    ];
    let roles = ["admin", "operator", "owner", "other"];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        for (role, want) in roles.iter().zip(expected) {
            let token = &tokens[role];
            let (got, answer) = call(&s, Some(token), method.clone(), path, body.clone()).await?;
            if got != *want {
                failures.push(format!(
                    "{role} {method} {path}: {got} (want {want}) {answer}"
                ));
            } else if !got.is_success() {
                ensure!(
                    answer["error"]["code"].is_string(),
                    "{role} {method} {path}: error without a code: {answer}"
                );
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} cells differ:\n{}",
        failures.len(),
        rows.len() * roles.len(),
        failures.join("\n")
    );

    // What a user lists is their own, and someone else's session looks exactly like none.
    let (_, listed) = call(
        &s,
        Some(&tokens["other"]),
        Method::GET,
        "/api/v1/sessions",
        None,
    )
    .await?;
    let listed: Vec<Session> = serde_json::from_value(listed["items"].clone())?;
    ensure!(
        !listed.is_empty() && listed.iter().all(|x| x.owner == "bob"),
        "bob lists only his sessions: {listed:?}"
    );
    let (_, commands) = call(
        &s,
        Some(&tokens["other"]),
        Method::GET,
        &format!("/api/v1/commands?session_id={a_id}"),
        None,
    )
    .await?;
    ensure!(
        commands == json!({"items": []}),
        "bob reads none of alice's commands: {commands}"
    );
    let (_, theirs) = call(
        &s,
        Some(&tokens["other"]),
        Method::GET,
        &format!("/api/v1/sessions/{a_id}"),
        None,
    )
    .await?;
    let (_, missing) = call(
        &s,
        Some(&tokens["other"]),
        Method::GET,
        &format!("/api/v1/sessions/{}", uuid::Uuid::now_v7()),
        None,
    )
    .await?;
    ensure!(
        theirs == missing,
        "another user's session must look absent: {theirs} vs {missing}"
    );
    let (_, templates) = call(
        &s,
        Some(&tokens["other"]),
        Method::GET,
        "/api/v1/templates",
        None,
    )
    .await?;
    ensure!(
        !templates.to_string().contains("staff-only"),
        "bob's catalog hides templates of groups he is not in: {templates}"
    );
    let (status, body) = call(
        &s,
        Some(&tokens["owner"]),
        Method::GET,
        "/api/v1/users",
        None,
    )
    .await?;
    ensure!(
        status == StatusCode::FORBIDDEN
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("admin")),
        "{body}"
    );
    // An agent key is not an API credential.
    let agent_key = s.agent_key("a2").await?;
    let (status, body) = call(&s, Some(&agent_key), Method::GET, "/api/v1/sessions", None).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "unauthorized");
    s.stop().await
}

async fn password_sign_in_cookies_and_sign_out(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    user_token(&s, "alice", "user").await?;
    let login =
        |password: &str, username: &str| json!({ "username": username, "password": password });
    // A wrong password and an unknown user answer alike.
    let (status, wrong) = call(
        &s,
        None,
        Method::POST,
        "/api/v1/auth/login",
        Some(login("nope-nope", "alice")),
    )
    .await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{wrong}");
    let (status, unknown) = call(
        &s,
        None,
        Method::POST,
        "/api/v1/auth/login",
        Some(login("nope-nope", "zed")),
    )
    .await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED && wrong == unknown,
        "{wrong} vs {unknown}"
    );

    // The cookie signs the browser in; it is HttpOnly and SameSite.
    let response = s
        .http
        .post(format!("{}/api/v1/auth/login", s.base))
        .json(&login(PASSWORD, "Alice"))
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "usernames are case-insensitive at sign-in"
    );
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .context("no cookie")?
        .to_str()?
        .to_owned();
    ensure!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let cookie = set_cookie
        .split(';')
        .next()
        .context("cookie pair")?
        .to_owned();
    let with_cookie = |method: Method, path: &str| {
        s.http
            .request(method, format!("{}{path}", s.base))
            .header(header::COOKIE, cookie.clone())
    };
    let (status, me) = read(with_cookie(Method::GET, "/api/v1/auth/me").send().await?).await?;
    ensure!(
        status == StatusCode::OK && me["user"]["username"] == "alice",
        "{me}"
    );
    // A page of another site cannot make the browser change anything.
    let (status, body) = read(
        with_cookie(Method::POST, "/api/v1/sessions")
            .header(header::ORIGIN, "https://evil.example")
            .json(&json!({ "template": "xterm" }))
            .send()
            .await?,
    )
    .await?;
    ensure!(status == StatusCode::FORBIDDEN, "cross-site POST: {body}");
    let (status, _) = read(
        with_cookie(Method::POST, "/api/v1/auth/logout")
            .send()
            .await?,
    )
    .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    let (status, _) = read(with_cookie(Method::GET, "/api/v1/auth/me").send().await?).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "the cookie must end at sign-out"
    );

    // Repeated failures are throttled, with Retry-After.
    let mut last = None;
    for _ in 0..6 {
        let response = s
            .http
            .post(format!("{}/api/v1/auth/login", s.base))
            .json(&login("wrong-password", "alice"))
            .send()
            .await?;
        last = Some((
            response.status(),
            response.headers().get(header::RETRY_AFTER).cloned(),
        ));
    }
    let (status, retry_after) = last.context("no answer")?;
    ensure!(
        status == StatusCode::TOO_MANY_REQUESTS && retry_after.is_some(),
        "the sixth failure in a row: {status} {retry_after:?}"
    );
    let (status, body) = call(
        &s,
        None,
        Method::POST,
        "/api/v1/auth/login",
        Some(login(PASSWORD, "alice")),
    )
    .await?;
    ensure!(
        status == StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits: {body}"
    );
    assert_error(&body, "too_many_attempts");
    s.stop().await
}

async fn disabled_users_and_revoked_tokens_stop_at_once(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let token = user_token(&s, "alice", "user").await?;
    let me = |token: String| {
        let s = &s;
        async move { call(s, Some(&token), Method::GET, "/api/v1/auth/me", None).await }
    };
    ensure!(me(token.clone()).await?.0 == StatusCode::OK);
    let (status, _) = s
        .call(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(json!({ "disabled": true })),
        )
        .await?;
    ensure!(status == StatusCode::OK);
    let (status, body) = me(token.clone()).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "a disabled user's token: {body}"
    );
    let (status, _) = call(
        &s,
        None,
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"username": "alice", "password": PASSWORD})),
    )
    .await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "a disabled user cannot sign in"
    );
    s.call(
        Method::PATCH,
        "/api/v1/users/alice",
        Some(json!({ "disabled": false })),
    )
    .await?;
    ensure!(
        me(token.clone()).await?.0 == StatusCode::OK,
        "enabled again"
    );

    let (status, tokens) = call(&s, Some(&token), Method::GET, "/api/v1/tokens", None).await?;
    ensure!(status == StatusCode::OK, "{tokens}");
    let id = tokens["items"][0]["id"]
        .as_str()
        .context("token id")?
        .to_owned();
    ensure!(
        !tokens.to_string().contains(&token),
        "listings never show a secret"
    );
    let (status, _) = call(
        &s,
        Some(&token),
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        None,
    )
    .await?;
    ensure!(status == StatusCode::NO_CONTENT);
    ensure!(
        me(token).await?.0 == StatusCode::UNAUTHORIZED,
        "a revoked token"
    );
    s.stop().await
}

async fn the_last_admin_stays(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    for change in [json!({ "disabled": true }), json!({ "role": "operator" })] {
        let (status, body) = s
            .call(Method::PATCH, "/api/v1/users/admin", Some(change))
            .await?;
        ensure!(status == StatusCode::CONFLICT, "{body}");
        assert_error(&body, "conflict");
    }
    let (status, _) = s.call(Method::DELETE, "/api/v1/users/admin", None).await?;
    ensure!(status == StatusCode::CONFLICT);
    s.stop().await
}

async fn the_audit_log_names_who_did_what_and_pages(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let _agent = s.agent("a1", 10).await?;
    let alice = user_token(&s, "alice", "user").await?;
    let session = create_session(&s, &alice, "xterm").await?;
    let wrong = json!({ "username": "alice", "password": "not-her-password" });
    call(&s, None, Method::POST, "/api/v1/auth/login", Some(wrong)).await?;

    let (status, page) = s
        .call(Method::GET, "/api/v1/audit?actor=alice", None)
        .await?;
    ensure!(status == StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    ensure!(
        actions.contains(&"session.create") && actions.contains(&"auth.login"),
        "alice's entries: {page}"
    );
    let created = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .find(|e| e["action"] == "session.create")
        .context("session.create")?;
    ensure!(
        created["target"] == session.id.to_string()
            && created["actor"] == "user:alice"
            && created["client_addr"] == "127.0.0.1",
        "who, what and from where: {created}"
    );
    let (_, failed) = s
        .call(Method::GET, "/api/v1/audit?action=auth.login_failed", None)
        .await?;
    ensure!(
        failed["items"][0]["target"] == "alice" && failed["items"][0]["actor_id"].is_null(),
        "a failed sign-in is recorded without an actor id: {failed}"
    );

    // Alice reads only her own entries, whatever she asks for.
    let (_, hers) = call(
        &s,
        Some(&alice),
        Method::GET,
        "/api/v1/audit?actor=admin",
        None,
    )
    .await?;
    let items = hers["items"].as_array().context("items")?;
    ensure!(
        !items.is_empty() && items.iter().all(|e| e["actor"] == "user:alice"),
        "{hers}"
    );

    // Pages: one at a time, newest first, until there is no next cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=1&cursor={c}"),
            None => "/api/v1/audit?limit=1".to_owned(),
        };
        let (status, page) = s.call(Method::GET, &path, None).await?;
        ensure!(status == StatusCode::OK, "{page}");
        seen.push(page["items"][0]["id"].as_i64().context("id")?);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let (_, all) = s.call(Method::GET, "/api/v1/audit", None).await?;
    let ids: Vec<i64> = all["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    ensure!(
        seen == ids && ids.windows(2).all(|w| w[0] > w[1]),
        "{seen:?} vs {ids:?}"
    );
    let (status, body) = s
        .call(Method::GET, "/api/v1/audit?cursor=nope", None)
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{body}");
    let since = (chrono::Utc::now() + chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, later) = s
        .call(Method::GET, &format!("/api/v1/audit?since={since}"), None)
        .await?;
    ensure!(later["items"] == json!([]), "nothing after now: {later}");
    s.stop().await
}

#[tokio::test]
async fn client_addresses_come_from_trusted_proxies_only() -> anyhow::Result<()> {
    let behind_proxy = streamspace_server::ServerConfig {
        trusted_proxies: vec!["127.0.0.1/32".parse()?],
        ..fast_config()
    };
    for (config, expected) in [(behind_proxy, "203.0.113.7"), (fast_config(), "127.0.0.1")] {
        let s = TestServer::sqlite(config).await?;
        let wrong = json!({ "username": "admin", "password": "not-the-password" });
        s.http
            .post(format!("{}/api/v1/auth/login", s.base))
            .header("x-forwarded-for", "203.0.113.7")
            .json(&wrong)
            .send()
            .await?;
        let (_, page) = s
            .call(Method::GET, "/api/v1/audit?action=auth.login_failed", None)
            .await?;
        ensure!(
            page["items"][0]["client_addr"] == expected,
            "want {expected}: {page}"
        );
        s.stop().await?;
    }
    Ok(())
}

async fn deleting_a_user_stops_their_sessions_and_keeps_the_record(
    backend: Backend,
) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let _agent = s.agent("a1", 10).await?;
    let alice = user_token(&s, "alice", "user").await?;
    let session = create_session(&s, &alice, "xterm").await?;
    let (status, body) = s.call(Method::DELETE, "/api/v1/users/alice", None).await?;
    ensure!(status == StatusCode::NO_CONTENT, "{body}");
    let commands: Vec<streamspace_proto::api::Command> = s
        .list(&format!("/api/v1/commands?session_id={}", session.id))
        .await?;
    ensure!(
        commands
            .iter()
            .any(|c| c.action == streamspace_proto::api::Action::StopSession),
        "a deleted user's session is stopped: {commands:?}"
    );
    let kept = s.session(session.id).await?;
    ensure!(
        kept.owner == "alice" && kept.owner_id.is_none(),
        "the record stays, ownerless: {kept:?}"
    );
    let (status, _) = call(&s, Some(&alice), Method::GET, "/api/v1/auth/me", None).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "a deleted user's token");
    s.stop().await
}
