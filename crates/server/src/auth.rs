//! Admin authentication for the REST API: `Authorization: Bearer <admin token>`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use streamspace_store::ApiKeyKind;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Who made a request, for the audit log.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub key_id: Uuid,
}

impl Actor {
    pub fn name(&self) -> String {
        format!("admin:{}", self.key_id)
    }
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Middleware admitting only requests with a valid admin token.
pub(crate) async fn require_admin(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = bearer_token(request.headers())
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <admin token>`"))?;
    let record = app
        .hasher
        .find(app.store.as_ref(), token)
        .await
        .map_err(|e| ApiError::from_store(e, "looking up an admin token"))?;
    match record {
        Some(record) if record.kind == ApiKeyKind::Admin => {
            request.extensions_mut().insert(Actor { key_id: record.id });
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::unauthorized("invalid or revoked admin token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }
}
