//! The web UI: the files `npm run build` wrote to `web/dist`, embedded in the binary.
//!
//! Served by the router's fallback, so every API route keeps precedence:
//! - `GET`/`HEAD` of a file in `web/dist` answers it with its content type. Files under
//!   `/assets/` have content hashes in their names and are cached for a year (`immutable`);
//!   everything else (`index.html`) is revalidated on each load (`no-cache`), with an `ETag`.
//! - Any other `GET`/`HEAD` path without a file extension answers `index.html`, so the UI's
//!   client-side routes (`/sessions`, `/view/{id}`, a share link's `/shared/{id}`, …) survive a
//!   reload.
//! - Paths under `/api/`, missing paths with a file extension, and every other method answer
//!   the API's JSON 404, as before.
//!
//! `web/dist` is committed: building the binary needs no Node.js. CI rebuilds it from `web/src`
//! and fails if the result differs from what is committed.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;

use crate::error::ApiError;

#[derive(Embed)]
#[folder = "../../web/dist"]
struct Assets;

const INDEX: &str = "index.html";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The router's fallback: a UI file, the UI's `index.html`, or the API's JSON 404.
pub(crate) async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return not_found();
    }
    let path = uri.path().trim_start_matches('/');
    if path == "api" || path.starts_with("api/") {
        return not_found();
    }
    if !path.is_empty() && !path.ends_with('/') {
        if let Some(response) = file(path, &headers) {
            return response;
        }
        // A missing file (an old hashed asset, a typo) is a 404, not the UI's page.
        let last = path.rsplit('/').next().unwrap_or(path);
        if last.contains('.') {
            return not_found();
        }
    }
    file(INDEX, &headers).unwrap_or_else(|| {
        tracing::error!("the embedded web UI has no index.html");
        not_found()
    })
}

fn not_found() -> Response {
    ApiError::not_found("no such route").into_response()
}

/// The embedded file at `path`, or `None`.
fn file(path: &str, request: &HeaderMap) -> Option<Response> {
    let asset = Assets::get(path)?;
    let etag = format!("\"{}\"", hex::encode(&asset.metadata.sha256_hash()[..16]));
    let cache = if path.starts_with("assets/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(asset.data.into_owned()));
        let mime = asset.metadata.mimetype();
        if let Ok(value) = HeaderValue::from_str(mime) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str) -> Response {
        fallback(
            Method::GET,
            path.parse().unwrap_or_default(),
            HeaderMap::new(),
        )
        .await
    }

    fn header_of(response: &Response, name: header::HeaderName) -> String {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn index_is_served_for_the_root_and_client_side_routes() {
        for path in [
            "/",
            "/sessions",
            "/view/0190c5a8-0000-7000-8000-000000000000",
            "/shared/0190c5a8-0000-7000-8000-000000000000",
        ] {
            let response = get(path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert!(header_of(&response, header::CONTENT_TYPE).starts_with("text/html"));
            assert_eq!(header_of(&response, header::CACHE_CONTROL), REVALIDATE);
        }
    }

    #[tokio::test]
    async fn hashed_assets_have_their_type_and_are_cached_for_good() {
        let script = Assets::iter()
            .find(|p| p.starts_with("assets/") && p.ends_with(".js"))
            .expect("the build emits a script");
        let response = get(&format!("/{script}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/javascript"
        );
        assert_eq!(header_of(&response, header::CACHE_CONTROL), IMMUTABLE);

        let mut conditional = HeaderMap::new();
        conditional.insert(
            header::IF_NONE_MATCH,
            response
                .headers()
                .get(header::ETAG)
                .cloned()
                .expect("an ETag"),
        );
        let again = fallback(
            Method::GET,
            format!("/{script}").parse().expect("a path"),
            conditional,
        )
        .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }

    #[tokio::test]
    async fn missing_files_api_paths_and_other_methods_are_json_404s() {
        for path in [
            "/assets/gone-123.js",
            "/api/v1/nope",
            "/api",
            "/favicon.ico",
        ] {
            let response = get(path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(
                header_of(&response, header::CONTENT_TYPE),
                "application/json"
            );
        }
        let post = fallback(Method::POST, "/".parse().expect("a path"), HeaderMap::new()).await;
        assert_eq!(post.status(), StatusCode::NOT_FOUND);
    }
}
