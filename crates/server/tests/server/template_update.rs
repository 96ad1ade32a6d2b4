//! `PATCH /api/v1/templates/{name}` over HTTP on both backends: a partial change keeps what it
//! does not name, `null` clears, the result is checked like a new template (limits and fields),
//! a missing template is 404, users may not, and every change is audited.

use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::access::user_token;
use crate::common::{Backend, assert_error, fast_config};
use crate::on_both_backends;

on_both_backends!(templates_change_in_part_checked_and_audited);

async fn templates_change_in_part_checked_and_audited(backend: Backend) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let full = json!({
        "name": "desktop",
        "description": "a desktop",
        "command": ["xterm"],
        "image": "registry.example/desktop:1",
        "resources": { "cpu_millis": 1500, "memory_mib": 2048 },
        "idle_timeout_secs": 900,
        "env": { "TZ": "UTC" },
        "allowed_groups": ["staff"]
    });
    let (status, body) = s
        .call(Method::POST, "/api/v1/templates", Some(full))
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");

    let change = json!({
        "description": "the desktop",
        "allowed_groups": ["staff", "ops"],
        "image": null,
        "resources": { "memory_mib": null },
        "idle_timeout_secs": 60
    });
    let (status, body) = s
        .call(Method::PATCH, "/api/v1/templates/desktop", Some(change))
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    ensure!(
        body["description"] == "the desktop"
            && body["allowed_groups"] == json!(["staff", "ops"])
            && body.get("image").is_none()
            && body["resources"] == json!({ "cpu_millis": 1500 })
            && body["idle_timeout_secs"] == 60
            && body["command"] == json!(["xterm"])
            && body["env"] == json!({ "TZ": "UTC" }),
        "changed what it named, kept the rest: {body}"
    );
    let (_, stored) = s
        .call(Method::GET, "/api/v1/templates/desktop", None)
        .await?;
    ensure!(stored == body, "stored as answered: {stored} vs {body}");

    let (status, body) = s
        .call(
            Method::PATCH,
            "/api/v1/templates/desktop",
            Some(json!({ "allowed_groups": null, "description": null })),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    ensure!(
        body.get("allowed_groups").is_none() && body["description"] == "",
        "null clears: {body}"
    );

    // The result is checked as a new template is: limits, fields, and something to run.
    for (bad, names) in [
        (json!({ "description": "x".repeat(2000) }), "description"),
        (json!({ "ports": { "vnc": 0 } }), "ports.vnc"),
        (
            json!({ "allowed_groups": ["Not A Group"] }),
            "allowed_groups",
        ),
        (json!({ "command": null }), "command"),
    ] {
        let (status, body) = s
            .call(Method::PATCH, "/api/v1/templates/desktop", Some(bad))
            .await?;
        ensure!(status == StatusCode::BAD_REQUEST, "{names}: {body}");
        assert_error(&body, "bad_request");
        ensure!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(names)),
            "the message names {names}: {body}"
        );
    }
    let (_, unchanged) = s
        .call(Method::GET, "/api/v1/templates/desktop", None)
        .await?;
    ensure!(
        unchanged["command"] == json!(["xterm"]) && unchanged["description"] == "",
        "a refused change changes nothing: {unchanged}"
    );
    let (status, body) = s
        .call(
            Method::PATCH,
            "/api/v1/templates/desktop",
            Some(json!({ "name": "renamed" })),
        )
        .await?;
    ensure!(status.is_client_error(), "the name is not a field: {body}");

    let (status, body) = s
        .call(
            Method::PATCH,
            "/api/v1/templates/missing",
            Some(json!({ "description": "x" })),
        )
        .await?;
    ensure!(status == StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "not_found");

    let alice = user_token(&s, "alice", "user").await?;
    let (status, body) = crate::access::call(
        &s,
        Some(&alice),
        Method::PATCH,
        "/api/v1/templates/desktop",
        Some(json!({ "description": "mine now" })),
    )
    .await?;
    ensure!(status == StatusCode::FORBIDDEN, "{body}");

    let (_, page) = s
        .call(
            Method::GET,
            "/api/v1/audit?action=template.update&target=desktop",
            None,
        )
        .await?;
    let items = page["items"].as_array().context("items")?;
    ensure!(
        items.len() == 2,
        "one entry per change made, none for refused ones: {page}"
    );
    ensure!(
        items[1]["detail"]
            == json!({
                "fields": ["description", "image", "resources", "idle_timeout_secs", "allowed_groups"],
                "allowed_groups": ["staff", "ops"]
            })
            && items[1]["actor"] == "user:admin",
        "{page}"
    );
    s.stop().await
}
