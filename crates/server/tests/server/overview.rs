//! The operators' overview over real HTTP on both backends: the minute samples come back as
//! points with the live counts beside them, and a bad window is refused naming the field.

use anyhow::{Context, ensure};
use reqwest::{Method, StatusCode};
use serde_json::json;
use streamspace_proto::api::Overview;

use crate::common::{Backend, assert_error, fast_config};
use crate::on_both_backends;

on_both_backends!(the_overview_shows_the_samples_and_the_counts_of_now);

async fn the_overview_shows_the_samples_and_the_counts_of_now(
    backend: Backend,
) -> anyhow::Result<()> {
    let s = backend.server(fast_config()).await?;
    let _agent = s.agent("a1", 100).await?;
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"template": "xterm"})),
        )
        .await?;
    ensure!(status == StatusCode::CREATED, "{body}");
    // What the sampler does just after a minute ends; this minute ends half a minute from now.
    let end = chrono::Utc::now() + chrono::Duration::seconds(30);
    ensure!(s.store.record_sample(end).await?);

    let (status, body) = s
        .call(Method::GET, "/api/v1/overview?hours=1", None)
        .await?;
    ensure!(status == StatusCode::OK, "{body}");
    let overview: Overview = serde_json::from_value(body)?;
    ensure!(
        overview.hours == 1 && overview.interval_secs == 60,
        "{overview:?}"
    );
    let point = overview.points.first().context("one point")?;
    ensure!(overview.points.len() == 1, "{overview:?}");
    ensure!(
        point.sessions_pending + point.sessions_starting + point.sessions_running == 1
            && point.agents_online == 1
            && point.commands_created >= 1,
        "{point:?}"
    );
    let live: u64 = ["pending", "starting", "running"]
        .iter()
        .filter_map(|s| overview.sessions_now.get(*s))
        .sum();
    ensure!(
        live == 1 && overview.sessions_now.len() == 6,
        "{overview:?}"
    );
    ensure!(overview.commands_in_flight.len() == 3, "{overview:?}");

    // The default window is six hours, in two-minute intervals.
    let (status, body) = s.call(Method::GET, "/api/v1/overview", None).await?;
    ensure!(status == StatusCode::OK, "{body}");
    ensure!(body["hours"] == 6 && body["interval_secs"] == 120, "{body}");

    for bad in ["hours=0", "hours=169", "hours=abc", "days=1"] {
        let (status, body) = s
            .call(Method::GET, &format!("/api/v1/overview?{bad}"), None)
            .await?;
        ensure!(status == StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_error(&body, "bad_request");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("hours") || message.contains("days"),
            "{bad}: the message names the field: {body}"
        );
    }
    Ok(())
}
