//! Templates' runtime fields over HTTP: stored and returned as sent, defaults for clients that
//! do not know them, and JSON errors that name the field for values out of range.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{TestServer, assert_error, fast_config};

#[tokio::test]
async fn runtime_fields_round_trip_and_bad_values_name_the_field() -> anyhow::Result<()> {
    let s = TestServer::sqlite(fast_config()).await?;
    let full = json!({
        "name": "desktop",
        "image": "registry.example/desktop:1",
        "ports": { "vnc": 5999 },
        "resources": { "cpu_millis": 1500, "memory_mib": 2048 },
        "persistent_home": "retain",
        "idle_timeout_secs": 900,
        "env": { "TZ": "UTC" }
    });
    let (status, body) = s
        .call(Method::POST, "/api/v1/templates", Some(full.clone()))
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for field in [
        "image",
        "ports",
        "resources",
        "persistent_home",
        "idle_timeout_secs",
    ] {
        assert_eq!(body[field], full[field], "{field} in {body}");
    }
    assert_eq!(
        body["command"],
        json!([]),
        "an image-only template has no command"
    );

    // A client that knows none of the new fields gets the defaults.
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/templates",
            Some(json!({ "name": "old-client", "command": ["xterm"] })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["ports"]["vnc"], 5901);
    assert_eq!(body["persistent_home"], "none");
    assert!(
        body.get("image").is_none() && body.get("idle_timeout_secs").is_none(),
        "{body}"
    );

    for (bad, field) in [
        (
            json!({ "name": "a", "command": [], "image": null }),
            "command",
        ),
        (json!({ "name": "b", "image": "has space" }), "image"),
        (
            json!({ "name": "c", "image": "i", "ports": { "vnc": 0 } }),
            "ports.vnc",
        ),
        (
            json!({ "name": "d", "image": "i", "resources": { "cpu_millis": 0 } }),
            "cpu_millis",
        ),
        (
            json!({ "name": "e", "image": "i", "resources": { "memory_mib": 1 } }),
            "memory_mib",
        ),
        (
            json!({ "name": "f", "image": "i", "idle_timeout_secs": 0 }),
            "idle_timeout_secs",
        ),
    ] {
        let (status, body) = s
            .call(Method::POST, "/api/v1/templates", Some(bad.clone()))
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} accepted: {body}");
        assert_error(&body, "bad_request");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{bad}: {message:?} does not name {field}"
        );
    }
    // Unknown policies and fields are refused by the body's shape, naming the field.
    for (bad, field) in [
        (
            json!({ "name": "g", "image": "i", "persistent_home": "keep" }),
            "persistent_home",
        ),
        (
            json!({ "name": "h", "image": "i", "ports": { "rdp": 3389 } }),
            "rdp",
        ),
    ] {
        let (status, body) = s
            .call(Method::POST, "/api/v1/templates", Some(bad.clone()))
            .await?;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad} accepted: {body}"
        );
        assert_error(&body, "invalid_body");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{bad}: {message:?} does not name {field}"
        );
    }
    s.stop().await
}
