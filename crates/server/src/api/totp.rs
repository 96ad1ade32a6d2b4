//! `/api/v1/auth/totp`: turning one-time codes on and off for your own account, and the second
//! step of a password sign-in (see [`crate::totp`] for the codes themselves).
//!
//! Enrolment has two steps so that a mistyped secret never locks anyone out: `POST` stores a
//! pending secret, and `POST .../confirm` with a code made from it turns it on and answers the
//! recovery codes, once. Turning it off needs the password; an admin can reset it for a user
//! who lost their device (`PATCH /api/v1/users/{username}` with `reset_totp`).

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde_json::json;
use streamspace_proto::api::{ConfirmTotp, DisableTotp, RecoveryCodes, TotpEnrolment};
use streamspace_store::{AuditEntry, UserRecord};
use uuid::Uuid;

use super::{ApiJson, audit};
use crate::auth::Actor;
use crate::error::ApiError;
use crate::signin::verify_password;
use crate::state::AppState;
use crate::totp;

/// Longest code accepted (a one-time code is 6 digits, a recovery code 11 characters).
const MAX_CODE: usize = 64;

async fn own_record(app: &AppState, actor: &Actor) -> Result<UserRecord, ApiError> {
    app.store
        .get_user_by_id(actor.user_id())
        .await
        .map_err(|e| ApiError::from_store(e, "reading your account"))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/totp",
    operation_id = "totp_start",
    tag = "auth",
    summary = "Start turning on two-step sign-in",
    responses(
        (status = 200, description = "The secret to put in an authenticator app", body = streamspace_proto::api::TotpEnrolment),
        (status = 409, description = "Two-step sign-in is already on", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn start(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<TotpEnrolment>, ApiError> {
    let record = own_record(&app, &actor).await?;
    if record.password_hash.is_none() {
        return Err(ApiError::bad_request(
            "one-time codes are for accounts that sign in with a password",
        ));
    }
    let secret = totp::new_secret();
    let otpauth_uri = totp::otpauth_uri(&secret, &record.user.username)?;
    let entry = audit(
        &actor,
        "auth.totp_start",
        record.user.username.clone(),
        json!({}),
    );
    let sealed = app.keys.totp.seal(record.user.id, &secret);
    app.store
        .start_totp(record.user.id, &sealed, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "starting one-time-code enrolment"))?;
    Ok(Json(TotpEnrolment {
        secret,
        otpauth_uri,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/totp/confirm",
    operation_id = "totp_confirm",
    tag = "auth",
    summary = "Confirm two-step sign-in with a first code",
    request_body = streamspace_proto::api::ConfirmTotp,
    responses(
        (status = 200, description = "Turned on; the recovery codes, shown once", body = streamspace_proto::api::RecoveryCodes),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "No enrolment was started", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn confirm(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<ConfirmTotp>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let keys = [format!("user:{}", actor.principal.username)];
    app.throttle.check(&keys)?;
    let record = own_record(&app, &actor).await?;
    let secret = match (&record.totp_secret, record.user.totp_enabled) {
        (Some(stored), false) => open_secret(&app, record.user.id, stored).await?,
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "no one-time-code enrolment is pending; start one with POST /api/v1/auth/totp",
            ));
        }
    };
    let generator = totp::generator(&secret, &record.user.username)?;
    let Some(step) = totp::check(&generator, &body.code, totp::unix_now()) else {
        app.throttle.failed(&keys);
        return Err(ApiError::bad_request(
            "the code is wrong; check the device's clock and try the next code",
        ));
    };
    let codes = totp::new_recovery_codes();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| totp::recovery_hash(&app.keys.credentials, record.user.id, c))
        .collect();
    let entry = audit(
        &actor,
        "auth.totp_enable",
        record.user.username.clone(),
        json!({ "recovery_codes": codes.len() }),
    );
    app.store
        .enable_totp(record.user.id, step, &hashes, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "turning one-time codes on"))?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/auth/totp",
    operation_id = "totp_disable",
    tag = "auth",
    summary = "Turn off two-step sign-in",
    request_body = streamspace_proto::api::DisableTotp,
    responses(
        (status = 204, description = "Turned off"),
        (status = 400, description = "The body is not valid JSON or a field is invalid (`bad_request`, `invalid_body`, `unsupported_media_type`, `payload_too_large`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(super) async fn disable(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(body): ApiJson<DisableTotp>,
) -> Result<StatusCode, ApiError> {
    let keys = [format!("user:{}", actor.principal.username)];
    app.throttle.check(&keys)?;
    let record = own_record(&app, &actor).await?;
    if !verify_password(body.password, record.password_hash).await {
        app.throttle.failed(&keys);
        return Err(ApiError::unauthorized("the password is wrong"));
    }
    // The store adds `was_enabled` to the entry.
    let entry = audit(
        &actor,
        "auth.totp_disable",
        record.user.username.clone(),
        json!({}),
    );
    app.store
        .clear_totp(record.user.id, &entry)
        .await
        .map_err(|e| ApiError::from_store(e, "turning one-time codes off"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The one-time-code secret of `user` from its stored form; one stored in plain text or under
/// the previous master secret is sealed again under the current key (compare-and-set, so a
/// replica doing the same at once changes nothing).
async fn open_secret(app: &AppState, user: Uuid, stored: &str) -> Result<String, ApiError> {
    let opened = app.keys.totp.open(user, stored).map_err(|e| {
        tracing::error!(user_id = %user, error = %e, "opening a one-time-code secret failed");
        ApiError::internal()
    })?;
    if opened.reseal {
        totp::reseal(app.store.as_ref(), &app.keys, user, stored, &opened.secret).await;
    }
    Ok(opened.secret)
}

/// How the second step of a sign-in was passed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SecondFactor {
    Totp,
    RecoveryCode,
}

/// Checks the sign-in's `code` for an account with one-time codes on: `Err(totp_required)`
/// without one, `Ok(None)` when it is wrong, already used, or a spent recovery code.
pub(super) async fn second_factor(
    app: &AppState,
    record: &UserRecord,
    code: Option<&str>,
    client_addr: Option<String>,
) -> Result<Option<SecondFactor>, ApiError> {
    let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
        return Err(ApiError::totp_required());
    };
    if code.len() > MAX_CODE {
        return Ok(None);
    }
    let id = record.user.id;
    if totp::looks_like_totp(code) {
        let Some(stored) = &record.totp_secret else {
            return Ok(None);
        };
        let secret = open_secret(app, id, stored).await?;
        let generator = totp::generator(&secret, &record.user.username)?;
        let Some(step) = totp::check(&generator, code, totp::unix_now()) else {
            return Ok(None);
        };
        let fresh = app
            .store
            .use_totp_step(id, step)
            .await
            .map_err(|e| ApiError::from_store(e, "checking a one-time code"))?;
        return Ok(fresh.then_some(SecondFactor::Totp));
    }
    // The store adds how many codes are `left` to the entry.
    let entry = AuditEntry {
        actor: format!("user:{}", record.user.username),
        actor_id: Some(id),
        client_addr,
        action: "auth.recovery_code_use".into(),
        target: record.user.username.clone(),
        detail: json!({}),
    };
    // Codes handed out before a rotation (or before keys had purposes) are stored under an
    // older key.
    for hash in totp::recovery_hashes(&app.keys.credentials, id, code) {
        let used = app
            .store
            .use_recovery_code(id, &hash, &entry)
            .await
            .map_err(|e| ApiError::from_store(e, "checking a recovery code"))?;
        if used {
            return Ok(Some(SecondFactor::RecoveryCode));
        }
    }
    Ok(None)
}
