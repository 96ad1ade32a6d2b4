//! The API's contract: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! attributes and the proto types' schemas, served at `GET /api/v1/openapi.json` and browsable
//! at `/api/docs` (Swagger UI, its files embedded in the binary: no CDN).
//!
//! Every route of the router is either described here or named in [`LEFT_OUT`] with the
//! reason; a test walks the router and fails on a route that is neither, so the document
//! cannot silently fall behind the code.

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::auth::SESSION_COOKIE;
use crate::state::AppState;

/// Where the document is served (no authentication: it describes only what anyone may read
/// in the source).
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// Where the docs UI is served.
pub const DOCS_UI_PATH: &str = "/api/docs";

/// Routes of the router the document does not describe, each with the reason.
///
/// Paths are written as the router spells them; a path left out is left out with all its
/// methods.
pub const LEFT_OUT: &[(&str, &str)] = &[
    (
        "/internal/v1/tunnels/open",
        "replica to replica only, authenticated by the replica proof",
    ),
    (
        "/internal/v1/transfers/open",
        "replica to replica only, authenticated by the replica proof",
    ),
    (
        "/internal/v1/tunnels/data",
        "replica to replica only, authenticated by the replica proof",
    ),
    (
        "/internal/v1/sessions/{id}/viewers",
        "replica to replica only, authenticated by the replica proof",
    ),
    (
        "/internal/v1/viewers/close",
        "replica to replica only, authenticated by the replica proof",
    ),
    ("/metrics", "Prometheus scraping, not part of the API"),
    (DOCUMENT_PATH, "this document itself"),
    (DOCS_UI_PATH, "the docs UI's page"),
    ("/api/docs/", "the docs UI's page"),
    ("/api/docs/{*rest}", "the docs UI's files"),
    // The web UI's files are served by the router's fallback, which is no route.
];

/// Error codes an answer's `error.code` can carry, listed in the error schema's description.
const ERROR_CODES: &[&str] = &[
    "agent_unavailable",
    "bad_request",
    "conflict",
    "forbidden",
    "forbidden_origin",
    "internal",
    "invalid_path",
    "invalid_body",
    "invalid_token",
    "method_not_allowed",
    "no_capacity",
    "not_found",
    "oidc_code_refused",
    "oidc_denied",
    "oidc_invalid_claims",
    "oidc_invalid_state",
    "oidc_invalid_token",
    "payload_too_large",
    "quota_exceeded",
    "redis_unavailable",
    "request_timeout",
    "session_ended",
    "session_not_running",
    "shutting_down",
    "token_expired",
    "too_many_attempts",
    "too_many_connections",
    "too_large",
    "too_many_streams",
    "totp_required",
    "transfer_failed",
    "transfer_forbidden",
    "transfer_unsupported",
    "unauthorized",
    "unsupported_media_type",
    "upload_incomplete",
    "wrong_agent",
    "wrong_session",
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "StreamSpace API",
        description = "The control plane's REST API. Every listing answers `{items, next_cursor}` \
            and takes `?limit=` (default 100, at most 1000) and `?cursor=` (the previous page's \
            `next_cursor`). Every error answers `{\"error\":{\"code\",\"message\"}}`.",
    ),
    paths(
        super::agents::list,
        super::agents::get,
        super::agents::remove,
        super::agents::ping,
        super::replicas::list,
        super::overview::get,
        super::agent_keys::create,
        super::agent_keys::list,
        super::agent_keys::revoke,
        super::users::list,
        super::users::create,
        super::users::get,
        super::users::update,
        super::users::remove,
        super::groups::list,
        super::groups::create,
        super::groups::get,
        super::groups::update,
        super::groups::remove,
        super::groups::add_member,
        super::groups::remove_member,
        super::quotas::get_user,
        super::quotas::set_user,
        super::quotas::get_group,
        super::quotas::set_group,
        super::rules::get_group,
        super::rules::set_group,
        super::rules::of_session,
        super::sessions::create,
        super::sessions::list,
        super::sessions::get,
        super::sessions::stop,
        super::sessions::hibernate,
        super::sessions::wake,
        crate::tunnel::viewer::connect,
        super::recordings::list,
        super::recordings::get,
        super::recordings::data,
        super::recordings::remove,
        super::shares::create,
        super::shares::list,
        super::shares::revoke,
        super::shares::viewers,
        super::shares::disconnect,
        crate::tunnel::viewer::connect_shared,
        crate::tunnel::transfer::list,
        crate::tunnel::transfer::upload,
        crate::tunnel::transfer::download,
        super::commands::list,
        super::commands::get,
        super::templates::list,
        super::templates::create,
        super::templates::get,
        super::templates::update,
        super::templates::remove,
        super::audit::list,
        super::auth::login,
        super::oidc::providers,
        super::oidc::login,
        super::oidc::callback,
        super::auth::me,
        super::auth::logout,
        super::auth::change_password,
        super::totp::start,
        super::totp::disable,
        super::totp::confirm,
        super::tokens::list,
        super::tokens::create,
        super::tokens::revoke,
        super::health::healthz,
        super::health::readyz,
        crate::agent_ws::connect,
        crate::tunnel::data::connect,
        crate::tunnel::viewer::vnc,
    ),
    modifiers(&Contract),
    tags(
        (name = "sessions", description = "Desktop sessions and their viewers"),
        (name = "recordings", description = "Recorded viewings (the session's owner and admins)"),
        (name = "templates", description = "What a session runs"),
        (name = "commands", description = "Commands sent to agents"),
        (name = "agents", description = "Agents (operators)"),
        (name = "agent-keys", description = "Agents' credentials (operators)"),
        (name = "replicas", description = "The control plane's replicas (operators)"),
        (name = "overview", description = "The whole system over the last hours (operators)"),
        (name = "users", description = "Local users (admins)"),
        (name = "groups", description = "Groups (admins)"),
        (name = "quotas", description = "Session quotas (admins)"),
        (name = "tokens", description = "API tokens"),
        (name = "files", description = "Files into and out of a session's transfer folder"),
        (name = "auth", description = "Signing in and out, passwords, two-step sign-in"),
        (name = "audit", description = "The audit log"),
        (name = "health", description = "Probes"),
        (name = "websockets", description = "WebSocket endpoints (answer 101 on upgrade)"),
    )
)]
struct ApiDoc;

/// Adds what attributes cannot say: the security schemes, the error codes, and the answers
/// whole classes of operations share (see `document_shared_answers`).
struct Contract;

/// What the JSON body extractor answers before a handler runs, on every operation taking one.
const BODY_REFUSALS: &[(&str, &str)] = &[
    (
        "413",
        "The body is larger than `--max-body-bytes` (`payload_too_large`)",
    ),
    (
        "415",
        "The body is not sent as `application/json` (`unsupported_media_type`)",
    ),
    (
        "422",
        "The body is JSON of the wrong shape: a missing or unknown field, a wrong type \
         (`bad_request`)",
    ),
];

/// What any signed-in operation can answer before (or besides) its handler: the credential
/// check, the policy and the bad-credential limiter.
const SIGNED_IN_REFUSALS: &[(&str, &str)] = &[
    (
        "401",
        "Not signed in, or the token is unknown or expired (`unauthorized`)",
    ),
    (
        "403",
        "The caller's role or ownership does not allow it, or a cross-site cookie request \
         (`forbidden`)",
    ),
    (
        "429",
        "Too many bad credentials from this address (`too_many_attempts`, with `Retry-After`)",
    ),
];

/// What every operation can answer.
const INTERNAL_ERROR: (&str, &str) = (
    "500",
    "Internal error (`internal`); the server log has the details",
);

/// Adds the answers shared by whole classes of operations, unless an operation describes its
/// own: the body extractor's refusals where there is a body, the sign-in refusals where a
/// credential is needed, and the internal error everywhere.
fn document_shared_answers(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            // A user's credential (not an agent key, not none): what the sign-in check and
            // the bad-credential limiter guard.
            let signed_in = operation.security.as_ref().is_some_and(|requirements| {
                requirements.iter().any(|r| {
                    serde_json::to_value(r).is_ok_and(|v| {
                        v.get("bearer").is_some() || v.get("session_cookie").is_some()
                    })
                })
            });
            let body = operation.request_body.is_some();
            let shared = BODY_REFUSALS
                .iter()
                .filter(|_| body)
                .chain(SIGNED_IN_REFUSALS.iter().filter(|_| signed_in))
                .chain([&INTERNAL_ERROR]);
            for (status, description) in shared {
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| error(description));
            }
        }
    }
}

impl Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        document_shared_answers(openapi);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (`streamspace token create`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The browser session set by `POST /api/v1/auth/login`; requests that change \
                 state must come from this site's own pages",
            ))),
        );
        components.add_security_scheme(
            "agent_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An agent key (`POST /api/v1/agent-keys`)"))
                    .build(),
            ),
        );
        if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(detail))) =
            components.schemas.get_mut("ErrorDetail")
            && let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(code))) =
                detail.properties.get_mut("code")
        {
            let codes: Vec<String> = ERROR_CODES.iter().map(|c| format!("`{c}`")).collect();
            code.description = Some(format!(
                "Stable and machine-readable, one of: {}",
                codes.join(", ")
            ));
        }
    }
}

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document as pretty JSON (what `streamspace openapi` prints).
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .expect("an OpenAPI document always serializes")
}

/// `GET /api/v1/openapi.json` and the docs UI under `/api/docs`.
pub(crate) fn router() -> Router<AppState> {
    // No validator badge: it would fetch from swagger.io, and the page works offline.
    let config = Config::new([DOCUMENT_PATH]).validator_url("none");
    SwaggerUi::new(DOCS_UI_PATH)
        .url(DOCUMENT_PATH, document())
        .config(config)
        .into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use tower::ServiceExt;

    use super::*;

    /// The methods a route may answer (`HEAD` comes with `GET`).
    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];

    /// The paths the router has routes for, read from its `Debug` form (axum offers no other
    /// way to list them): the `RouteId(n): "/path"` entries of its path router.
    fn routed_paths(router: &Router) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        let paths = debug
            .split("fallback_router")
            .next()
            .expect("split yields at least one part");
        paths
            .split("RouteId(")
            .skip(1)
            .filter_map(|entry| {
                let (_, rest) = entry.split_once("): \"")?;
                let (path, _) = rest.split_once('"')?;
                Some(path.to_owned())
            })
            .filter(|path| path.starts_with('/') && !path.contains("__private__"))
            .collect()
    }

    /// `path` with every `{param}` filled in, so that a request reaches its route.
    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|part| {
                if part.starts_with('{') {
                    uuid::Uuid::nil().to_string()
                } else {
                    part.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Which methods `path` is routed for: a method without a handler answers 405 before
    /// any layer or handler runs, so no request here changes anything.
    async fn routed_methods(router: &Router, path: &str) -> anyhow::Result<Vec<Method>> {
        let mut routed = Vec::new();
        for method in METHODS {
            let request = Request::builder()
                .method(method.clone())
                .uri(concrete(path))
                .body(Body::empty())?;
            let response = router.clone().oneshot(request).await?;
            if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                routed.push(method);
            }
        }
        Ok(routed)
    }

    /// Every route of the router is described by the document or named in `LEFT_OUT`, and
    /// every operation the document describes is routed.
    #[tokio::test]
    async fn the_document_describes_every_route_but_the_named_ones() -> anyhow::Result<()> {
        let db = streamspace_testkit::TestDatabase::sqlite()?;
        let (router, _) = crate::api::tests::routes(db.url()).await?;
        let doc = document();
        let described: BTreeSet<(String, String)> = doc
            .paths
            .paths
            .iter()
            .flat_map(|(path, item)| {
                let json = serde_json::to_value(item).expect("a path item serializes");
                let methods: Vec<String> = json
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                methods
                    .into_iter()
                    .filter(|m| METHODS.iter().any(|k| k.as_str().eq_ignore_ascii_case(m)))
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let left_out: BTreeSet<&str> = LEFT_OUT.iter().map(|(path, _)| *path).collect();
        let paths = routed_paths(&router);
        anyhow::ensure!(
            paths.contains("/api/v1/sessions") && paths.contains("/healthz"),
            "reading the router's paths found too few: {paths:?}"
        );
        let mut routed = BTreeSet::new();
        for path in &paths {
            // OpenAPI spells a catch-all segment `{name}` where the router says `{*name}`;
            // left-out paths keep the router's spelling.
            let spelled = if left_out.contains(path.as_str()) {
                path.clone()
            } else {
                path.replace("{*", "{")
            };
            for method in routed_methods(&router, path).await? {
                routed.insert((method.to_string(), spelled.clone()));
            }
        }
        let undocumented: Vec<_> = routed
            .iter()
            .filter(|(_, path)| !left_out.contains(path.as_str()))
            .filter(|route| !described.contains(*route))
            .collect();
        anyhow::ensure!(
            undocumented.is_empty(),
            "routes neither in the OpenAPI document nor in openapi::LEFT_OUT: {undocumented:?}"
        );
        let unrouted: Vec<_> = described.difference(&routed).collect();
        anyhow::ensure!(
            unrouted.is_empty(),
            "operations the OpenAPI document describes that the router does not have: {unrouted:?}"
        );
        let stale: Vec<_> = left_out.iter().filter(|p| !paths.contains(**p)).collect();
        anyhow::ensure!(
            stale.is_empty(),
            "LEFT_OUT names paths with no route: {stale:?}"
        );
        Ok(())
    }

    /// The document and the docs UI are served to anyone, the UI's page under the same
    /// Content-Security-Policy as the web UI (it loads only its own files).
    #[tokio::test]
    async fn the_document_and_docs_ui_are_served_without_credentials() -> anyhow::Result<()> {
        let db = streamspace_testkit::TestDatabase::sqlite()?;
        let (router, _) = crate::api::tests::routes(db.url()).await?;
        let get = |uri: &str| Request::builder().uri(uri).body(Body::empty());
        let response = router.clone().oneshot(get(DOCUMENT_PATH)?).await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "{DOCUMENT_PATH}: {response:?}"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 22).await?;
        let served: serde_json::Value = serde_json::from_slice(&body)?;
        anyhow::ensure!(
            served == serde_json::to_value(document())?,
            "the served document differs from openapi::document()"
        );
        anyhow::ensure!(
            served["openapi"] == "3.1.0",
            "not OpenAPI 3.1: {}",
            served["openapi"]
        );
        let response = router.clone().oneshot(get("/api/docs/")?).await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "/api/docs/: {response:?}"
        );
        let csp = response
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .cloned();
        let page = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
        let page = String::from_utf8_lossy(&page);
        anyhow::ensure!(
            page.contains("swagger-initializer.js"),
            "not the docs page: {page}"
        );
        anyhow::ensure!(
            csp.is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("script-src 'self'"))),
            "the docs page lacks the Content-Security-Policy"
        );
        for file in [
            "swagger-initializer.js",
            "swagger-ui-bundle.js",
            "swagger-ui.css",
        ] {
            let uri = format!("/api/docs/{file}");
            let response = router.clone().oneshot(get(&uri)?).await?;
            anyhow::ensure!(response.status() == StatusCode::OK, "{uri}: {response:?}");
            let text = axum::body::to_bytes(response.into_body(), 1 << 24).await?;
            anyhow::ensure!(!text.is_empty(), "{uri} is empty");
            if file == "swagger-initializer.js" {
                let text = String::from_utf8_lossy(&text);
                anyhow::ensure!(
                    text.contains(DOCUMENT_PATH),
                    "the UI does not load our document: {text}"
                );
            }
        }
        Ok(())
    }

    /// The web UI's API types are generated from `web/openapi.json`, so that copy must be
    /// this document; `.ci/run` then checks the generated types are current.
    #[test]
    fn the_web_uis_copy_of_the_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/openapi.json");
        let copy = std::fs::read_to_string(path).expect("web/openapi.json is committed");
        assert!(
            copy.trim_end() == document_json(),
            "web/openapi.json is out of date: run `cargo run -p streamspace -- openapi > \
             web/openapi.json`, then `npm run build` in web/, and commit both"
        );
    }

    /// Each operation has its own id and every one that needs a signed-in user documents the
    /// refusals a user can meet before the handler runs.
    #[test]
    fn operations_are_unique_and_document_their_refusals() {
        let doc = serde_json::to_value(document()).expect("serializes");
        let mut ids = BTreeSet::new();
        let paths = doc["paths"].as_object().expect("paths");
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("a path item") {
                let id = op["operationId"].as_str().expect("an operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} used twice");
                let signed_in = op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
                if signed_in {
                    for status in ["401", "403", "429"] {
                        assert!(
                            op["responses"].get(status).is_some(),
                            "{method} {path} does not document {status}"
                        );
                    }
                }
            }
        }
        assert!(ids.len() >= 50, "only {} operations", ids.len());
    }
}
