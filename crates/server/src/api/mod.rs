//! The REST API: routes, shared extractors, and the JSON error answers for everything that is not
//! a route.
//!
//! Handlers live in one module per resource. All of them use [`ApiJson`], [`ApiPath`] and
//! [`ApiQuery`], whose rejections become [`ApiError`]s, so even a malformed body or path answers
//! with `{"error":{"code","message"}}`.

mod agent_keys;
mod agents;
mod commands;
mod health;
mod replicas;
mod sessions;
mod template_fields;
mod templates;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde_json::Value;
use streamspace_store::AuditEntry;
use tower_http::trace::TraceLayer;

use crate::auth::{Actor, require_admin};
use crate::error::ApiError;
pub(crate) use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The whole HTTP surface of a replica.
pub(crate) fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route(
            "/api/v1/sessions",
            post(sessions::create).get(sessions::list),
        )
        .route(
            "/api/v1/sessions/{id}",
            get(sessions::get).delete(sessions::stop),
        )
        .route("/api/v1/sessions/{id}/hibernate", post(sessions::hibernate))
        .route("/api/v1/sessions/{id}/wake", post(sessions::wake))
        .route(
            "/api/v1/sessions/{id}/connect",
            post(crate::tunnel::viewer::connect),
        )
        .route("/api/v1/agents", get(agents::list))
        .route(
            "/api/v1/agents/{id}",
            get(agents::get).delete(agents::remove),
        )
        .route("/api/v1/agents/{id}/ping", post(agents::ping))
        .route("/api/v1/replicas", get(replicas::list))
        .route("/api/v1/commands", get(commands::list))
        .route("/api/v1/commands/{command_id}", get(commands::get))
        .route(
            "/api/v1/templates",
            get(templates::list).post(templates::create),
        )
        .route("/api/v1/templates/{name}", delete(templates::remove))
        .route(
            "/api/v1/agent-keys",
            post(agent_keys::create).get(agent_keys::list),
        )
        .route("/api/v1/agent-keys/{id}", delete(agent_keys::revoke))
        .route_layer(from_fn_with_state(state.clone(), require_admin));
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(render_metrics))
        .route("/api/v1/agents/connect", get(crate::agent_ws::connect))
        .route("/api/v1/agents/tunnel", get(crate::tunnel::data::connect))
        .route(
            "/internal/v1/tunnels/open",
            post(crate::tunnel::remote::open_here),
        )
        .route(
            "/internal/v1/tunnels/data",
            get(crate::tunnel::data::internal),
        )
        .route("/api/v1/sessions/{id}/vnc", get(crate::tunnel::viewer::vnc))
        .merge(admin)
        .fallback(crate::web::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                tracing::info_span!(
                    "request",
                    request_id = %uuid::Uuid::now_v7(),
                    method = %request.method(),
                    path = %request.uri().path(),
                )
            },
        ))
        .with_state(state)
}

/// `GET /metrics`: Prometheus text, with the connected agents counted just now.
async fn render_metrics(State(app): State<AppState>) -> impl IntoResponse {
    crate::metrics::render(app.hub.agents().await.len())
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Records a mutating call; a failure to audit is logged, not returned (the change is made).
pub(crate) async fn audit(
    app: &AppState,
    actor: &Actor,
    action: &str,
    target: String,
    detail: Value,
) {
    let entry = AuditEntry {
        actor: actor.name(),
        action: action.to_owned(),
        target,
        detail,
    };
    if let Err(e) = app.store.audit(&entry).await {
        tracing::error!(error = %e, action, "writing the audit log failed");
    }
}
