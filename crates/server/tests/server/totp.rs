//! One-time codes (TOTP) over real HTTP on both backends: enrolment, the sign-in's second step
//! (required, wrong, replayed), recovery codes that work once, an admin's reset, turning it off
//! with the password, and the audit entries of each. Codes are computed here from the secret
//! the server hands out, each for a later time step than the last, so the replay guard never
//! refuses a code the test means to be fresh.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streamspace_proto::api::{Me, RecoveryCodes, TotpEnrolment, User};
use totp_rs::{Builder, Secret};

use crate::access::{PASSWORD, call, user_token};
use crate::common::{Backend, TestServer, assert_error, fast_config};
use crate::on_both_backends;

on_both_backends!(totp_enrolment_sign_in_recovery_reset_and_removal);

/// The code of the current time step plus `offset` steps.
fn code(secret: &str, offset: i64) -> anyhow::Result<String> {
    let totp = Builder::new()
        .with_secret(Secret::try_from_base32(secret)?)
        .build()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let at = (now / 30).checked_add_signed(offset).context("time")? * 30;
    Ok(totp.generate(at).to_string())
}

/// A well-formed code that is none of the ones the server accepts now.
fn wrong_code(secret: &str) -> anyhow::Result<String> {
    let valid = [code(secret, -1)?, code(secret, 0)?, code(secret, 1)?];
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !valid.contains(c))
        .context("some repeated digit is not a valid code")
}

async fn login(
    s: &TestServer,
    password: &str,
    totp: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut body = json!({ "username": "alice", "password": password });
    if let Some(totp) = totp {
        body["totp"] = json!(totp);
    }
    call(s, None, Method::POST, "/api/v1/auth/login", Some(body)).await
}

/// Starts and confirms enrolment; returns the secret and the recovery codes.
async fn enrol(s: &TestServer, token: &str) -> anyhow::Result<(String, Vec<String>)> {
    let (status, body) = call(s, Some(token), Method::POST, "/api/v1/auth/totp", None).await?;
    ensure!(status == StatusCode::OK, "starting enrolment: {body}");
    let enrolment: TotpEnrolment = serde_json::from_value(body)?;
    ensure!(
        enrolment.otpauth_uri.starts_with("otpauth://totp/")
            && enrolment.otpauth_uri.contains(&enrolment.secret),
        "{enrolment:?}"
    );
    let secret = enrolment.secret;
    let wrong = json!({ "code": wrong_code(&secret)? });
    let confirm = "/api/v1/auth/totp/confirm";
    let (status, body) = call(s, Some(token), Method::POST, confirm, Some(wrong)).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST,
        "a wrong code enables nothing: {body}"
    );
    let right = json!({ "code": code(&secret, -1)? });
    let (status, body) = call(s, Some(token), Method::POST, confirm, Some(right.clone())).await?;
    ensure!(status == StatusCode::OK, "confirming: {body}");
    let codes: RecoveryCodes = serde_json::from_value(body)?;
    ensure!(codes.recovery_codes.len() == 10, "{codes:?}");
    let (status, body) = call(s, Some(token), Method::POST, confirm, Some(right)).await?;
    ensure!(status == StatusCode::CONFLICT, "confirming twice: {body}");
    Ok((secret, codes.recovery_codes))
}

async fn totp_enabled(s: &TestServer, token: &str) -> anyhow::Result<bool> {
    let (status, body) = call(s, Some(token), Method::GET, "/api/v1/auth/me", None).await?;
    ensure!(status == StatusCode::OK, "{body}");
    Ok(serde_json::from_value::<Me>(body)?.user.totp_enabled)
}

async fn totp_enrolment_sign_in_recovery_reset_and_removal(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let token = user_token(&s, "alice", "user").await?;
    ensure!(!totp_enabled(&s, &token).await?);
    let (secret, recovery) = enrol(&s, &token).await?;
    ensure!(
        totp_enabled(&s, &token).await?,
        "confirmed enrolment turns codes on"
    );

    // The code is asked for only after the right password.
    let (status, body) = login(&s, PASSWORD, None).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "totp_required");
    let (status, wrong_password) = login(&s, "wrong-password", None).await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{wrong_password}");
    assert_error(&wrong_password, "unauthorized");
    let (status, wrong_code) = login(&s, PASSWORD, Some(&wrong_code(&secret)?)).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED && wrong_code == wrong_password,
        "a wrong code answers like a wrong password: {wrong_code} vs {wrong_password}"
    );

    let current = code(&secret, 0)?;
    let (status, body) = login(&s, PASSWORD, Some(&current)).await?;
    ensure!(
        status == StatusCode::OK,
        "signing in with a fresh code: {body}"
    );
    let (status, body) = login(&s, PASSWORD, Some(&current)).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED && body == wrong_password,
        "a code is accepted once: {body}"
    );

    // A recovery code works once, however it is typed.
    let typed = recovery[3].to_uppercase();
    let (status, body) = login(&s, PASSWORD, Some(&typed)).await?;
    ensure!(
        status == StatusCode::OK,
        "signing in with a recovery code: {body}"
    );
    let (status, body) = login(&s, PASSWORD, Some(&recovery[3])).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED && body == wrong_password,
        "a recovery code is accepted once: {body}"
    );

    // An admin resets it: the password alone signs in again.
    let reset = json!({ "reset_totp": true });
    let (status, body) = s
        .call(Method::PATCH, "/api/v1/users/alice", Some(reset))
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    ensure!(!serde_json::from_value::<User>(body)?.totp_enabled);
    let (status, body) = login(&s, PASSWORD, None).await?;
    ensure!(status == StatusCode::OK, "signing in after a reset: {body}");
    let (status, _) = login(&s, PASSWORD, Some(&recovery[4])).await?;
    ensure!(
        status == StatusCode::OK,
        "a code sent anyway is ignored without TOTP"
    );

    // Enrolled again, then turned off by the user, which needs the password.
    let (secret, _) = enrol(&s, &token).await?;
    let (status, body) = login(&s, PASSWORD, Some(&code(&secret, 0)?)).await?;
    ensure!(
        status == StatusCode::OK,
        "signing in with the new secret: {body}"
    );
    let remove = |password: &str| json!({ "password": password });
    let path = "/api/v1/auth/totp";
    let (status, body) = call(
        &s,
        Some(&token),
        Method::DELETE,
        path,
        Some(remove("nope-nope")),
    )
    .await?;
    ensure!(status == StatusCode::UNAUTHORIZED, "{body}");
    ensure!(
        totp_enabled(&s, &token).await?,
        "a wrong password removes nothing"
    );
    let (status, body) = call(
        &s,
        Some(&token),
        Method::DELETE,
        path,
        Some(remove(PASSWORD)),
    )
    .await?;
    ensure!(status == StatusCode::NO_CONTENT, "{body}");
    ensure!(!totp_enabled(&s, &token).await?);
    let (status, body) = login(&s, PASSWORD, None).await?;
    ensure!(status == StatusCode::OK, "{body}");

    for action in [
        "auth.totp_enable",
        "auth.recovery_code_use",
        "user.totp_reset",
        "auth.totp_disable",
    ] {
        let (status, body) = s
            .call(Method::GET, &format!("/api/v1/audit?action={action}"), None)
            .await?;
        ensure!(status == StatusCode::OK, "{body}");
        let entries = body["items"].as_array().context("a page of entries")?;
        ensure!(
            entries.iter().any(|e| e["target"] == "alice"),
            "no {action} entry for alice: {body}"
        );
    }
    s.stop().await
}
