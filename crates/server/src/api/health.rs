//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers;
//! Redis, in Redis mode, is reported as `ok` or `degraded` but never makes the replica unready).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use streamspace_proto::api::Readiness;

use crate::state::AppState;

/// A readiness probe must answer quickly even when the database hangs.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health_healthz",
    tag = "health",
    summary = "Liveness: the process answers",
    responses(
        (status = 200, description = "`{\"status\":\"ok\"}`", body = serde_json::Value),
    ),
    security(()),
)]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "health_readyz",
    tag = "health",
    summary = "Readiness: the database answers",
    responses(
        (status = 200, description = "Ready", body = streamspace_proto::api::Readiness),
        (status = 503, description = "Not ready", body = streamspace_proto::api::Readiness),
    ),
    security(()),
)]
pub(super) async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let ping = tokio::time::timeout(PING_TIMEOUT, app.store.ping()).await;
    let (status, ready, database) = match ping {
        Ok(Ok(())) => (StatusCode::OK, true, "ok"),
        Err(_) => {
            tracing::warn!(
                backend = app.store.backend(),
                "database did not answer in time"
            );
            (StatusCode::SERVICE_UNAVAILABLE, false, "unreachable")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, backend = app.store.backend(), "database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, false, "unreachable")
        }
    };
    let body = Readiness {
        ready,
        database: format!("{}: {database}", app.store.backend()),
        replica_id: app.config.replica_id.clone(),
        redis: app.cluster.redis_health().map(str::to_owned),
    };
    (status, Json(body))
}
