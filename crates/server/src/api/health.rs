//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use streamspace_proto::api::Readiness;

use crate::state::AppState;

pub(super) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(super) async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (status, ready, database) = match app.store.ping().await {
        Ok(()) => (StatusCode::OK, true, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, backend = app.store.backend(), "database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, false, "unreachable")
        }
    };
    let body = Readiness {
        ready,
        database: format!("{}: {database}", app.store.backend()),
        replica_id: app.config.replica_id.clone(),
    };
    (status, Json(body))
}
