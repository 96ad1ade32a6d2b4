//! `/api/v1/auth`: signing in and out with a password, who am I, and changing one's password.
//!
//! A sign-in sets the browser session cookie (HttpOnly, SameSite=Lax, Secure when the public
//! URL is https) and, when asked with `token_name`, also returns a personal API token — how
//! `streamspace login` gets the token it saves. A wrong username, a wrong password and a
//! disabled account all answer the same 401 after the same work — so does a wrong one-time code
//! for an account that needs one (a missing code answers 401 `totp_required`, but only after
//! the right password) — and repeated failures per
//! account and per client address are answered 429 `too_many_attempts` for a while.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use streamspace_proto::api::{ChangePassword, LoginRequest, LoginResponse, Me};
use streamspace_store::{ApiKeyKind, AuditEntry, UserChange};

use super::totp::{SecondFactor, second_factor};
use super::{ApiJson, audit};
use crate::auth::{Actor, SESSION_COOKIE, SESSION_LIFETIME};
use crate::error::ApiError;
use crate::keys::create_user_credential;
use crate::signin::{check_new_password, hash_password, verify_password};
use crate::state::AppState;

/// Longest username or password a sign-in may send.
const MAX_INPUT: usize = 1024;

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "auth_login",
    tag = "auth",
    summary = "Sign in with a password (and a one-time code when needed)",
    request_body = streamspace_proto::api::LoginRequest,
    responses(
        (status = 200, description = "Signed in: a token, and the `streamspace_session` cookie", body = streamspace_proto::api::LoginResponse),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 401, description = "Wrong credentials (`unauthorized`) or a one-time code is needed (`totp_required`)", body = streamspace_proto::api::ErrorBody),
        (status = 429, description = "Too many failed attempts (`too_many_attempts`, with `Retry-After`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(()),
)]
pub(super) async fn login(
    State(app): State<AppState>,
    parts: axum::http::request::Parts,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let client_addr = crate::auth::client_addr(
        &parts.extensions,
        &parts.headers,
        &app.config.trusted_proxies,
    );
    let username = body.username.trim().to_lowercase();
    let keys = [
        format!("user:{username}"),
        format!("addr:{}", client_addr.as_deref().unwrap_or("unknown")),
    ];
    app.throttle.check(&keys)?;
    if username.len() > MAX_INPUT || body.password.len() > MAX_INPUT {
        return Err(ApiError::bad_request(format!(
            "username and password must be at most {MAX_INPUT} bytes"
        )));
    }
    let record = match app.store.get_user(&username).await {
        Ok(record) => Some(record),
        Err(streamspace_store::StoreError::NotFound { .. }) => None,
        Err(e) => return Err(ApiError::from_store(e, "reading a user")),
    };
    let hash = record.as_ref().and_then(|r| r.password_hash.clone());
    let password_ok = verify_password(body.password, hash).await;
    let record = match record {
        Some(record) if password_ok && !record.user.disabled => record,
        _ => return Err(refuse(&app, &keys, &username, client_addr).await),
    };
    let second_factor = if record.user.totp_enabled {
        let code = body.totp.as_deref();
        match second_factor(&app, &record, code, client_addr.clone()).await? {
            Some(factor) => Some(factor),
            None => return Err(refuse(&app, &keys, &username, client_addr).await),
        }
    } else {
        None
    };
    let user = record.user;
    app.throttle.succeeded(&keys[0]);
    if let Err(e) = app.store.record_login(user.id).await {
        tracing::warn!(error = %e, "recording a sign-in failed");
    }
    // What the sign-in creates is audited as done by the user signing in, each in the
    // transaction that creates it: the personal token asked for (first, so that the sign-in's
    // entry can name it), then the browser session.
    let by_user = |action: &str, target: String, detail: serde_json::Value| AuditEntry {
        actor: format!("user:{}", user.username),
        actor_id: Some(user.id),
        client_addr: client_addr.clone(),
        action: action.to_owned(),
        target,
        detail,
    };
    let token = match body.token_name {
        Some(name) => {
            let entry = |id: uuid::Uuid| {
                let detail = super::tokens::created_detail(&name, user.id);
                by_user("token.create", id.to_string(), detail)
            };
            Some(super::tokens::issue(&app, user.id, &name, None, entry).await?)
        }
        None => None,
    };
    let detail = |session: uuid::Uuid| {
        json!({
            "session": session,
            "token": token.as_ref().map(|t| t.id),
            "second_factor": second_factor.map(|f| match f {
                SecondFactor::Totp => "totp",
                SecondFactor::RecoveryCode => "recovery_code",
            }),
        })
    };
    let (_, secret) = create_user_credential(
        app.store.as_ref(),
        &app.keys,
        ApiKeyKind::Browser,
        user.id,
        "browser",
        Some(SESSION_LIFETIME.as_secs_f64()),
        |id| by_user("auth.login", user.username.clone(), detail(id)),
    )
    .await
    .map_err(|e| ApiError::from_store(e, "starting a browser session"))?;
    let cookie = cookie_value(&app, &secret, SESSION_LIFETIME.as_secs());
    let mut response = Json(LoginResponse { user, token }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Counts a failed sign-in and answers it: the same for a wrong username, password or code.
async fn refuse(
    app: &AppState,
    keys: &[String],
    username: &str,
    client_addr: Option<String>,
) -> ApiError {
    app.throttle.failed(keys);
    record_failure(app, username, client_addr).await;
    ApiError::unauthorized("wrong username or password or code")
}

async fn record_failure(app: &AppState, username: &str, client_addr: Option<String>) {
    let entry = AuditEntry {
        actor: format!("anonymous:{username}"),
        actor_id: None,
        client_addr,
        action: "auth.login_failed".into(),
        target: username.to_owned(),
        detail: json!({}),
    };
    crate::audit::record_event(app, &entry).await;
}

/// The `Set-Cookie` value for the session secret (an empty secret with `max_age` 0 clears it).
pub(super) fn cookie_value(app: &AppState, secret: &str, max_age: u64) -> HeaderValue {
    let secure = app
        .config
        .tunnel
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let value = format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Ends the credential the request used (a browser session or a personal token; the
/// bootstrap admin token stays, automation depends on it) and clears the cookie.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "auth_logout",
    tag = "auth",
    summary = "Sign out (ends the token or browser session used)",
    responses(
        (status = 204, description = "Signed out; the cookie is cleared"),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn logout(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, ApiError> {
    let entry = audit(
        &actor,
        "auth.logout",
        actor.principal.username.clone(),
        json!({ "credential": actor.credential_id }),
    );
    if matches!(actor.kind, ApiKeyKind::Browser | ApiKeyKind::User) {
        app.store
            .revoke_api_key(actor.credential_id, &entry)
            .await
            .map_err(|e| ApiError::from_store(e, "signing out"))?;
        app.revoked("signed out", None).await;
    } else {
        // The bootstrap admin token stays: nothing changed but the record of signing out.
        crate::audit::record_event(&app, &entry).await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie_value(&app, "", 0));
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    operation_id = "auth_me",
    tag = "auth",
    summary = "Who the caller is",
    responses(
        (status = 200, description = "The signed-in user", body = streamspace_proto::api::Me),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn me(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Me>, ApiError> {
    let record = app
        .store
        .get_user_by_id(actor.user_id())
        .await
        .map_err(|e| ApiError::from_store(e, "reading your account"))?;
    Ok(Json(Me {
        quota: super::quotas::effective(&app, record.user.id).await?,
        usage: super::quotas::usage(&app, record.user.id).await?,
        default_session_size: Some(app.config.default_session_size),
        user: record.user,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    operation_id = "auth_change_password",
    tag = "auth",
    summary = "Change the caller's password",
    request_body = streamspace_proto::api::ChangePassword,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn change_password(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let keys = [format!("user:{}", actor.principal.username)];
    app.throttle.check(&keys)?;
    check_new_password("new_password", &body.new_password)?;
    let record = app
        .store
        .get_user_by_id(actor.user_id())
        .await
        .map_err(|e| ApiError::from_store(e, "reading your account"))?;
    if !verify_password(body.old_password, record.password_hash).await {
        app.throttle.failed(&keys);
        return Err(ApiError::unauthorized("the old password is wrong"));
    }
    let change = UserChange {
        password_hash: Some(hash_password(body.new_password).await?),
        ..UserChange::default()
    };
    let entry = audit(
        &actor,
        "auth.password_change",
        actor.principal.username.clone(),
        json!({}),
    );
    app.store
        .update_user(&actor.principal.username, &change, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "changing your password"))?;
    Ok(StatusCode::NO_CONTENT)
}
