//! Quotas over real HTTP on both backends: inheritance from groups and the server default,
//! the 409 `quota_exceeded` answer with its numbers, and use as `auth/me` and admins see it.

use anyhow::ensure;
use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_proto::api::{Me, QuotaLimits, UserQuota};

use crate::access::{call, create_session, user_token};
use crate::common::{Backend, assert_error, fast_config};
use crate::on_both_backends;

on_both_backends!(a_session_over_the_quota_is_refused_with_the_numbers);

async fn a_session_over_the_quota_is_refused_with_the_numbers(
    backend: Backend,
) -> anyhow::Result<()> {
    let mut config = fast_config();
    config.default_quota = QuotaLimits {
        max_sessions: Some(1),
        max_cpu_millis: Some(100_000),
        max_memory_mib: None,
    };
    let default_size = config.default_session_size;
    let s = backend.server(config).await?;
    let _agent = s.agent("a1", 100).await?;
    let alice = user_token(&s, "alice", "user").await?;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/groups",
            Some(json!({"name": "staff"})),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");
    s.call(Method::PUT, "/api/v1/groups/staff/members/alice", None)
        .await?;
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/groups/staff/quota",
            Some(json!({"max_sessions": 3})),
        )
        .await?;
    ensure!(
        status == StatusCode::OK && body["limits"]["max_sessions"] == 3,
        "{body}"
    );

    let (_, me) = call(&s, Some(&alice), Method::GET, "/api/v1/auth/me", None).await?;
    let me: Me = serde_json::from_value(me)?;
    let expected = QuotaLimits {
        max_sessions: Some(3),
        max_cpu_millis: Some(100_000),
        max_memory_mib: None,
    };
    ensure!(
        me.quota == expected && me.usage.sessions == 0,
        "the group's 3 overrides the default's 1, the rest is the default: {me:?}"
    );
    ensure!(
        me.default_session_size == Some(default_size),
        "auth/me tells what a template without resources counts: {me:?}"
    );

    for _ in 0..3 {
        create_session(&s, &alice, "xterm").await?;
    }
    let body = json!({ "template": "xterm" });
    let (status, answer) = call(
        &s,
        Some(&alice),
        Method::POST,
        "/api/v1/sessions",
        Some(body),
    )
    .await?;
    ensure!(
        status == StatusCode::CONFLICT,
        "a 4th session: {status} {answer}"
    );
    assert_error(&answer, "quota_exceeded");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("max_sessions is 3")
            && message.contains("3 in use")
            && message.contains("needs 1"),
        "the message names the limit, the use and the need: {message}"
    );

    let quota: UserQuota = s.get_json("/api/v1/users/alice/quota").await?;
    ensure!(
        quota.limits == QuotaLimits::default()
            && quota.effective == expected
            && quota.usage.sessions == 3
            && quota.usage.cpu_millis
                == 3 * u64::from(fast_config().default_session_size.cpu_millis),
        "an admin sees alice's limits and use: {quota:?}"
    );

    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/users/alice/quota",
            Some(json!({"max_sessions": 4})),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    create_session(&s, &alice, "xterm").await?;
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/users/alice/quota",
            Some(json!({"max_sessions": null, "max_memory_mib": 1})),
        )
        .await?;
    let quota: UserQuota = serde_json::from_value(body.clone())?;
    ensure!(
        status == StatusCode::OK
            && quota.limits.max_sessions.is_none()
            && quota.limits.max_memory_mib == Some(1)
            && quota.effective.max_sessions == Some(3),
        "null clears alice's own limit and the group's applies again: {body}"
    );
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/users/alice/quota",
            Some(json!({"max_sessions": -1})),
        )
        .await?;
    ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY,
        "{status} {body}"
    );
    let (status, _) = s
        .call(Method::GET, "/api/v1/users/nobody/quota", None)
        .await?;
    ensure!(status == StatusCode::NOT_FOUND);
    Ok(())
}
