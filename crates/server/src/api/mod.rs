//! The REST API: routes, shared extractors, and the JSON error answers for everything that is not
//! a route.
//!
//! Handlers live in one module per resource. All of them use [`ApiJson`], [`ApiPath`] and
//! [`ApiQuery`], whose rejections become [`ApiError`]s, so even a malformed body or path answers
//! with `{"error":{"code","message"}}`.

mod agent_keys;
mod agents;
mod audit;
mod auth;
mod commands;
mod groups;
mod health;
mod oidc;
pub mod openapi;
mod overview;
mod paging;
mod quotas;
mod recordings;
mod replicas;
mod rules;
mod sessions;
mod shares;
mod template_fields;
mod template_limits;
mod templates;
mod tokens;
mod totp;
mod users;

#[cfg(test)]
mod tests;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use tower_http::trace::TraceLayer;

pub(crate) use crate::audit::entry as audit;
use crate::auth::{Actor, require_user};
use crate::error::ApiError;
pub(crate) use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::policy::{Action, Resource};
use crate::state::AppState;

/// The whole HTTP surface of a replica.
///
/// Every route under `/api/v1` but sign-in, health and the agents' and viewers' own endpoints
/// (which carry their own credentials) needs a signed-in user; what that user may do is the
/// policy's decision, asked by the handlers or, for routes that are operator- or admin-only as
/// a whole, by a layer over their group.
pub(crate) fn router(state: AppState) -> Router {
    let operator = Router::new()
        .route("/api/v1/agents", get(agents::list))
        .route(
            "/api/v1/agents/{id}",
            get(agents::get).delete(agents::remove),
        )
        .route("/api/v1/agents/{id}/ping", post(agents::ping))
        .route("/api/v1/replicas", get(replicas::list))
        .route("/api/v1/overview", get(overview::get))
        .route(
            "/api/v1/agent-keys",
            post(agent_keys::create).get(agent_keys::list),
        )
        .route("/api/v1/agent-keys/{id}", delete(agent_keys::revoke))
        .route_layer(from_fn(|r, n| require(Action::ManageAgents, r, n)));
    let admin = Router::new()
        .route("/api/v1/users", get(users::list).post(users::create))
        .route(
            "/api/v1/users/{username}",
            get(users::get).patch(users::update).delete(users::remove),
        )
        .route("/api/v1/groups", get(groups::list).post(groups::create))
        .route(
            "/api/v1/groups/{name}",
            get(groups::get)
                .patch(groups::update)
                .delete(groups::remove),
        )
        .route(
            "/api/v1/users/{username}/quota",
            get(quotas::get_user).put(quotas::set_user),
        )
        .route(
            "/api/v1/groups/{name}/quota",
            get(quotas::get_group).put(quotas::set_group),
        )
        .route(
            "/api/v1/groups/{name}/rules",
            get(rules::get_group).put(rules::set_group),
        )
        .route(
            "/api/v1/groups/{name}/members/{username}",
            put(groups::add_member).delete(groups::remove_member),
        )
        .route_layer(from_fn(|r, n| require(Action::ManageUsers, r, n)));
    let signed_in = Router::new()
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
        .route("/api/v1/sessions/{id}/rules", get(rules::of_session))
        .route(
            "/api/v1/sessions/{id}/connect",
            post(crate::tunnel::viewer::connect),
        )
        .route("/api/v1/sessions/{id}/recordings", get(recordings::list))
        .route(
            "/api/v1/recordings/{id}",
            get(recordings::get).delete(recordings::remove),
        )
        .route("/api/v1/recordings/{id}/data", get(recordings::data))
        .route(
            "/api/v1/sessions/{id}/shares",
            post(shares::create).get(shares::list),
        )
        .route(
            "/api/v1/sessions/{id}/shares/{share_id}",
            delete(shares::revoke),
        )
        .route("/api/v1/sessions/{id}/viewers", get(shares::viewers))
        .route(
            "/api/v1/sessions/{id}/viewers/{viewer_id}",
            delete(shares::disconnect),
        )
        .route(
            "/api/v1/shares/{share_id}/connect",
            post(crate::tunnel::viewer::connect_shared),
        )
        .route(
            "/api/v1/sessions/{id}/files",
            get(crate::tunnel::transfer::list),
        )
        .route(
            "/api/v1/sessions/{id}/files/{*path}",
            get(crate::tunnel::transfer::download).put(crate::tunnel::transfer::upload),
        )
        .route("/api/v1/commands", get(commands::list))
        .route("/api/v1/commands/{command_id}", get(commands::get))
        .route(
            "/api/v1/templates",
            get(templates::list).post(templates::create),
        )
        .route(
            "/api/v1/templates/{name}",
            get(templates::get)
                .patch(templates::update)
                .delete(templates::remove),
        )
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/password", post(auth::change_password))
        .route("/api/v1/auth/totp", post(totp::start).delete(totp::disable))
        .route("/api/v1/auth/totp/confirm", post(totp::confirm))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", delete(tokens::revoke))
        .merge(operator)
        .merge(admin)
        .route_layer(from_fn_with_state(state.clone(), require_user));
    let max_body = state.config.max_body_bytes;
    let metrics_here = state.config.http.metrics_listen.is_none();
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(if metrics_here {
            metrics_router()
        } else {
            Router::new().route("/metrics", get(metrics_elsewhere))
        })
        .route("/api/v1/agents/connect", get(crate::agent_ws::connect))
        .route("/api/v1/agents/tunnel", get(crate::tunnel::data::connect))
        .route(
            "/internal/v1/tunnels/open",
            post(crate::tunnel::remote::open_here),
        )
        .route(
            "/internal/v1/transfers/open",
            post(crate::tunnel::remote::open_transfer_here),
        )
        .route(
            "/internal/v1/sessions/{id}/viewers",
            get(shares::internal_viewers),
        )
        .route("/internal/v1/viewers/close", post(shares::internal_close))
        .route(
            "/internal/v1/tunnels/data",
            get(crate::tunnel::data::internal),
        )
        .route("/api/v1/sessions/{id}/vnc", get(crate::tunnel::viewer::vnc))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/providers", get(oidc::providers))
        .route("/api/v1/auth/oidc/{provider}/login", get(oidc::login))
        .route("/api/v1/auth/oidc/{provider}/callback", get(oidc::callback))
        .merge(openapi::router())
        .merge(signed_in)
        .fallback(crate::web::fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(
            state.config.http.request_timeout,
            crate::http::request_timeout,
        ))
        .layer(from_fn_with_state(
            state.config.http.https || state.config.tls.is_some(),
            crate::http::security_headers,
        ))
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

/// `GET /metrics` alone: beside the API, or on its own listener (`--metrics-listen`).
pub(crate) fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(render_metrics))
}

/// `GET /metrics` on the API's listener when metrics have one of their own.
async fn metrics_elsewhere() -> ApiError {
    ApiError::not_found("metrics are served on their own listener (--metrics-listen)")
}

/// `GET /metrics`: Prometheus text, with the connected agents counted just now; with
/// `--metrics-token-file`, only for a request bearing that token.
async fn render_metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.config.http.metrics_token
        && !token.admits(&headers)
    {
        return ApiError::unauthorized("send the metrics token: `Authorization: Bearer <token>`")
            .into_response();
    }
    crate::metrics::render(app.hub.agents().await.len()).into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method",
    )
}

/// Layer over a group of routes that all need `action` to be allowed on the system as a whole.
async fn require(action: Action, request: Request, next: Next) -> Result<Response, ApiError> {
    let actor = request
        .extensions()
        .get::<Actor>()
        .ok_or_else(|| ApiError::unauthorized("sign in first"))?;
    actor.may(action, Resource::System)?;
    Ok(next.run(request).await)
}
