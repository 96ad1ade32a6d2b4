//! Session rules over real HTTP on both backends: a template's rules are copied into its
//! sessions, a group's rules apply to its members at the moment of use, the stricter wins per
//! field, the server's defaults fill what nobody says, and bad values are refused naming the
//! field.

use anyhow::ensure;
use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_proto::api::{
    ClipboardPolicy, EffectiveRules, RecordingPolicy, SessionRules, TransferPolicy,
};

use crate::access::{call, create_session, user_token};
use crate::common::{Backend, assert_error, fast_config};
use crate::on_both_backends;

on_both_backends!(the_stricter_of_template_and_group_rules_applies);

async fn the_stricter_of_template_and_group_rules_applies(backend: Backend) -> anyhow::Result<()> {
    let mut config = fast_config();
    config.session_rules.transfer_max_bytes = 777;
    let s = backend.server(config).await?;
    let _agent = s.agent("a1", 100).await?;
    let alice = user_token(&s, "alice", "user").await?;
    let bob = user_token(&s, "bob", "user").await?;
    let template = json!({
        "name": "desk",
        "command": ["xterm"],
        "rules": {"clipboard": "to_session", "recording": "on_request"},
    });
    let (status, body) = s
        .call(Method::POST, "/api/v1/templates", Some(template))
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");
    ensure!(body["rules"]["clipboard"] == "to_session", "{body}");

    // Bad values name the field, on templates and groups alike.
    let (status, body) = s
        .call(
            Method::PATCH,
            "/api/v1/templates/desk",
            Some(json!({"rules": {"clipboard_max_bytes": 0}})),
        )
        .await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{body}");
    ensure!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rules.clipboard_max_bytes")),
        "{body}"
    );
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/groups",
            Some(json!({"name": "contractors"})),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/groups/contractors/rules",
            Some(json!({"clipboard": "sometimes"})),
        )
        .await?;
    ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY,
        "{status} {body}"
    );
    assert_error(&body, "invalid_body");

    let a = create_session(&s, &alice, "desk").await?;
    let b = create_session(&s, &bob, "desk").await?;
    let rules_of = |token: String, id: uuid::Uuid| {
        let s = &s;
        async move {
            let (status, body) = call(
                s,
                Some(&token),
                Method::GET,
                &format!("/api/v1/sessions/{id}/rules"),
                None,
            )
            .await?;
            ensure!(status == StatusCode::OK, "{body}");
            Ok::<EffectiveRules, anyhow::Error>(serde_json::from_value(body)?)
        }
    };
    let before = rules_of(alice.clone(), a.id).await?;
    ensure!(
        before
            == EffectiveRules {
                clipboard: ClipboardPolicy::ToSession,
                clipboard_max_bytes: streamspace_server::DEFAULT_RULES.clipboard_max_bytes,
                file_transfer: TransferPolicy::Both,
                transfer_max_bytes: 777,
                recording: RecordingPolicy::OnRequest,
            },
        "the template's rules, then the server's defaults: {before:?}"
    );

    // A group's rules apply to its members from the next use on; bob is not a member.
    let group_rules = SessionRules {
        clipboard: Some(ClipboardPolicy::FromSession),
        file_transfer: Some(TransferPolicy::Download),
        recording: Some(RecordingPolicy::Always),
        ..SessionRules::default()
    };
    let (status, body) = s
        .call(
            Method::PUT,
            "/api/v1/groups/contractors/rules",
            Some(serde_json::to_value(group_rules)?),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    s.call(
        Method::PUT,
        "/api/v1/groups/contractors/members/alice",
        None,
    )
    .await?;
    let after = rules_of(alice.clone(), a.id).await?;
    ensure!(
        after.clipboard == ClipboardPolicy::None
            && after.file_transfer == TransferPolicy::Download
            && after.recording == RecordingPolicy::Always,
        "the stricter of the template's and the group's: {after:?}"
    );
    ensure!(rules_of(bob.clone(), b.id).await? == before);

    // A template change applies to new sessions; the running one keeps its copy.
    let (status, body) = s
        .call(
            Method::PATCH,
            "/api/v1/templates/desk",
            Some(json!({"rules": null})),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    ensure!(rules_of(bob.clone(), b.id).await? == before);
    let fresh = create_session(&s, &bob, "desk").await?;
    let defaults = EffectiveRules {
        transfer_max_bytes: 777,
        ..streamspace_server::DEFAULT_RULES
    };
    ensure!(rules_of(bob, fresh.id).await? == defaults);

    let (_, audit) = s
        .call(Method::GET, "/api/v1/audit?action=group.rules", None)
        .await?;
    ensure!(
        audit["items"][0]["target"] == "contractors",
        "setting a group's rules is audited: {audit}"
    );
    Ok(())
}
