//! `/api/v1/auth/providers` and `/api/v1/auth/oidc/{provider}/…`: signing in through a single
//! sign-on provider.
//!
//! `login` stores a new flow (state, nonce, PKCE verifier, where to return) in the database,
//! binds it to the browser with a short-lived cookie holding the state, and redirects to the
//! provider. `callback` checks that the state is the browser's own, takes the flow (once: a
//! replayed state finds nothing), exchanges the code, has the ID token verified, and only then
//! creates or updates the user — so no failure creates anyone. It then sets the same session
//! cookie as a password sign-in and redirects to the flow's return path.
//!
//! Failures answer JSON errors (`oidc_invalid_state`, `oidc_denied`, `oidc_code_refused`,
//! `oidc_invalid_token`, `oidc_invalid_claims`, `unauthorized` for a disabled account); a
//! browser (a request that accepts `text/html`) is instead sent back to the sign-in page with
//! the code (`/signin?sso_error=CODE`), which says what happened. Each is audited with the
//! provider, with the whole reason. Unlike password sign-in
//! these are not throttled: nothing in a callback can be guessed (states are 128-bit random
//! and single use; codes are checked by the provider, with PKCE), and the provider throttles
//! its own password form.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use streamspace_proto::api::SignInProvider;
use streamspace_store::{ApiKeyKind, AuditEntry, NewOidcFlow, OidcSignIn, UserRecord};

use super::{ApiPath, ApiQuery};
use crate::auth::{SESSION_LIFETIME, cookie};
use crate::error::ApiError;
use crate::keys::create_user_credential;
use crate::oidc::{FlowError, Provider};
use crate::state::AppState;

/// How long a sign-in at the provider may take.
const FLOW_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Flows older than this are purged whenever a new one starts.
const PURGE_AFTER: Duration = Duration::from_secs(60 * 60);
/// The cookie that ties a flow to the browser that started it.
const FLOW_COOKIE: &str = "streamspace_oidc_state";
/// Longest `return_to` accepted.
const MAX_RETURN_TO: usize = 2048;

/// `GET /api/v1/auth/providers`: public, for the sign-in page.
#[utoipa::path(
    get,
    path = "/api/v1/auth/providers",
    operation_id = "auth_providers",
    tag = "auth",
    summary = "The single sign-on providers, one button each on the sign-in page",
    responses(
        (status = 200, description = "A page of the configured providers (none: no items)", body = streamspace_proto::api::Page<SignInProvider>),
        (status = 400, description = "A bad `limit` or `cursor` (`bad_request`)", body = streamspace_proto::api::ErrorBody),
    ),
    params(streamspace_proto::api::PageQuery),
    security(()),
)]
pub(super) async fn providers(
    State(app): State<AppState>,
    ApiQuery(page): ApiQuery<streamspace_proto::api::PageQuery>,
) -> Result<Json<streamspace_proto::api::Page<SignInProvider>>, ApiError> {
    let page = super::paging::of_list(app.oidc.list(), page.limit, page.cursor.as_deref(), |p| {
        p.id.clone()
    })?;
    Ok(Json(page))
}

/// Query of `GET /api/v1/auth/oidc/{provider}/login`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LoginQuery {
    /// A local path of the web UI to come back to after signing in (default `/`).
    return_to: Option<String>,
}

/// `GET /api/v1/auth/oidc/{provider}/login`: redirects to the provider.
#[utoipa::path(
    get,
    path = "/api/v1/auth/oidc/{provider}/login",
    operation_id = "auth_oidc_login",
    tag = "auth",
    summary = "Start signing in through a single sign-on provider (a browser navigation)",
    params(("provider" = String, Path, description = "The provider's id"), LoginQuery),
    responses(
        (status = 302, description = "To the provider's authorization endpoint; sets the `streamspace_oidc_state` cookie"),
        (status = 400, description = "`return_to` is not a local path, or the query is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such provider (`not_found`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(()),
)]
pub(super) async fn login(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    let provider = provider(&app, &id)?;
    let return_to = query.return_to.unwrap_or_else(|| "/".to_owned());
    if !local_path(&return_to) {
        return Err(ApiError::bad_request(
            "return_to must be a path on this server (starting with one '/')",
        ));
    }
    let started = provider.start().await;
    let flow = NewOidcFlow {
        state: started.state.clone(),
        provider: id,
        nonce: started.nonce,
        pkce_verifier: started.pkce_verifier,
        return_to,
    };
    app.store
        .start_oidc_flow(&flow, PURGE_AFTER.as_secs_f64())
        .await
        .map_err(|e| ApiError::from_store(e, "starting a single sign-on"))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, header_value(&started.url)?);
    headers.insert(
        header::SET_COOKIE,
        flow_cookie(&app, &started.state, FLOW_LIFETIME.as_secs())?,
    );
    Ok((StatusCode::FOUND, headers).into_response())
}

/// Query of the callback, as the provider sends it (RFC 6749 §4.1.2).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CallbackQuery {
    /// The flow's state, as sent to the provider.
    state: Option<String>,
    /// The authorization code.
    code: Option<String>,
    /// The provider's refusal (`access_denied`, …), instead of a code.
    error: Option<String>,
    /// The provider's words about its refusal.
    error_description: Option<String>,
}

/// `GET /api/v1/auth/oidc/{provider}/callback`: where the provider sends the browser back.
#[utoipa::path(
    get,
    path = "/api/v1/auth/oidc/{provider}/callback",
    operation_id = "auth_oidc_callback",
    tag = "auth",
    summary = "Where the provider sends the browser back; signs it in",
    params(("provider" = String, Path, description = "The provider's id"), CallbackQuery),
    responses(
        (status = 302, description = "Signed in: the `streamspace_session` cookie is set and the browser goes back where it started; for a browser navigation a refusal also answers 302, to `/signin?sso_error=CODE`"),
        (status = 400, description = "Unknown, used or expired state (`oidc_invalid_state`), or an invalid query (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 401, description = "The provider refused (`oidc_denied`), the code was refused (`oidc_code_refused`), the ID token is invalid (`oidc_invalid_token`) or lacks claims (`oidc_invalid_claims`), or the account is disabled (`unauthorized`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such provider (`not_found`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(()),
)]
pub(super) async fn callback(
    State(app): State<AppState>,
    parts: axum::http::request::Parts,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    let client_addr = crate::auth::client_addr(
        &parts.extensions,
        &parts.headers,
        &app.config.trusted_proxies,
    );
    let provider = provider(&app, &id)?;
    match finish(&app, provider, &parts.headers, &query, client_addr.clone()).await {
        Ok((record, return_to)) => signed_in(&app, record, return_to, client_addr).await,
        Err(e) => {
            let entry = AuditEntry {
                actor: "anonymous:oidc".into(),
                actor_id: None,
                client_addr,
                action: "auth.oidc_login_failed".into(),
                target: id.clone(),
                detail: json!({ "provider": id, "code": e.code, "reason": e.message }),
            };
            crate::audit::record_event(&app, &entry).await;
            tracing::info!(provider = %id, code = e.code, reason = %e.message,
                "single sign-on refused");
            if wants_html(&parts.headers) {
                let page = format!("/signin?sso_error={}", e.code);
                return Ok((
                    StatusCode::FOUND,
                    [(header::LOCATION, header_value(&page)?)],
                )
                    .into_response());
            }
            Err(e)
        }
    }
}

/// Everything a callback checks, in order; the user is written only once all of it passed.
async fn finish(
    app: &AppState,
    provider: &Provider,
    headers: &HeaderMap,
    query: &CallbackQuery,
    client_addr: Option<String>,
) -> Result<(UserRecord, String), ApiError> {
    let state = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid_state("the provider sent no state"))?;
    if cookie(headers, FLOW_COOKIE) != Some(state) {
        return Err(invalid_state(
            "this sign-in was not started in this browser (or its cookie expired); start again",
        ));
    }
    let flow = app
        .store
        .take_oidc_flow(state, FLOW_LIFETIME.as_secs_f64())
        .await
        .map_err(|e| ApiError::from_store(e, "reading a single sign-on"))?
        .ok_or_else(|| invalid_state("unknown or already used sign-in state; start again"))?;
    if flow.expired {
        return Err(invalid_state(
            "this sign-in took longer than 10 minutes; start again",
        ));
    }
    if flow.flow.provider != provider.config.id {
        return Err(invalid_state(
            "this sign-in was started with another provider",
        ));
    }
    if let Some(error) = &query.error {
        let description = query.error_description.as_deref().unwrap_or("");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "oidc_denied",
            format!("the provider refused the sign-in: {error} {description}")
                .trim()
                .to_owned(),
        ));
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("the provider sent no authorization code"))?;
    let verified = provider
        .finish(code, &flow.flow.pkce_verifier, &flow.flow.nonce)
        .await
        .map_err(flow_error)?;
    let sign_in = OidcSignIn {
        issuer: verified.issuer,
        subject: verified.subject,
        username: verified.mapped.username,
        display_name: verified.mapped.display_name,
        email: verified.mapped.email,
        role: verified.mapped.role,
        groups: verified.mapped.groups,
    };
    // Completed and written by the store in the sign-in's own transaction.
    let audit = AuditEntry {
        actor: String::new(),
        actor_id: None,
        client_addr,
        action: "auth.oidc_login".into(),
        target: String::new(),
        detail: json!({ "provider": provider.config.id, "issuer": sign_in.issuer }),
    };
    let record = app
        .store
        .oidc_sign_in(&sign_in, &audit)
        .await
        .map_err(|e| ApiError::from_store(e, "signing in a single sign-on user"))?;
    if record.user.disabled {
        return Err(ApiError::unauthorized("this account is disabled"));
    }
    Ok((record, flow.flow.return_to))
}

/// Starts the browser session and sends the browser back where it started.
async fn signed_in(
    app: &AppState,
    record: UserRecord,
    return_to: String,
    client_addr: Option<String>,
) -> Result<Response, ApiError> {
    let user = record.user;
    let (_, secret) = create_user_credential(
        app.store.as_ref(),
        &app.keys,
        ApiKeyKind::Browser,
        user.id,
        "browser",
        Some(SESSION_LIFETIME.as_secs_f64()),
        // The sign-in itself is `auth.oidc_login`, written with the user's update; this
        // records the browser session it opens.
        |id| AuditEntry {
            actor: format!("user:{}", user.username),
            actor_id: Some(user.id),
            client_addr: client_addr.clone(),
            action: "auth.session_start".into(),
            target: user.username.clone(),
            detail: json!({ "credential": id, "via": "oidc" }),
        },
    )
    .await
    .map_err(|e| ApiError::from_store(e, "starting a browser session"))?;
    let mut response = (
        StatusCode::FOUND,
        [(header::LOCATION, header_value(&return_to)?)],
    )
        .into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        super::auth::cookie_value(app, &secret, SESSION_LIFETIME.as_secs()),
    );
    headers.append(header::SET_COOKIE, flow_cookie(app, "", 0)?);
    Ok(response)
}

/// Whether the request comes from a browser navigating (rather than an API client).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn provider<'a>(app: &'a AppState, id: &str) -> Result<&'a Provider, ApiError> {
    app.oidc
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no single sign-on provider {id:?}")))
}

fn invalid_state(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "oidc_invalid_state", message)
}

fn flow_error(e: FlowError) -> ApiError {
    let code = match e {
        FlowError::CodeRefused(_) => "oidc_code_refused",
        FlowError::NoIdToken | FlowError::InvalidToken(_) => "oidc_invalid_token",
        FlowError::InvalidClaims(_) => "oidc_invalid_claims",
    };
    ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
}

/// Whether `path` stays on this server: one leading `/`, no scheme or host, no backslash.
fn local_path(path: &str) -> bool {
    path.len() <= MAX_RETURN_TO
        && path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
}

fn header_value(value: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(value).map_err(|_| ApiError::bad_request("not a valid header value"))
}

/// The flow cookie: only sent to the single sign-on routes, gone after the flow's lifetime.
fn flow_cookie(app: &AppState, state: &str, max_age: u64) -> Result<HeaderValue, ApiError> {
    let secure = app
        .config
        .tunnel
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    header_value(&format!(
        "{FLOW_COOKIE}={state}; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; \
         Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_local() {
        for ok in ["/", "/sessions", "/#/catalog?x=1"] {
            assert!(local_path(ok), "{ok}");
        }
        for bad in [
            "",
            "sessions",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "/a\nb",
        ] {
            assert!(!local_path(bad), "{bad:?}");
        }
    }
}
