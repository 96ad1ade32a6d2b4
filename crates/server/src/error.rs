//! Errors: [`ServerError`] for the library's public functions, [`ApiError`] for HTTP answers.
//!
//! Every HTTP error leaves the server as `{"error":{"code","message"}}` (proto's `ErrorBody`).
//! Store failures that are not the client's fault are logged here, inside the request's span,
//! and answered with a bare `internal` so no SQL text reaches a client.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use streamspace_proto::api::{ErrorBody, ErrorDetail};
use streamspace_store::StoreError;

/// What can stop the server or one of its setup functions.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid server configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("invalid server configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("loading the master secret")]
    Secret(#[from] crate::keyring::SecretError),
    #[error("serving HTTP")]
    Io(#[from] std::io::Error),
    #[error("hashing a password failed")]
    PasswordHash,
    /// The generated admin token could not be saved (so it was not stored either).
    #[error("saving the generated admin token")]
    SaveAdminToken(#[source] std::io::Error),
}

/// An HTTP error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to send in `Retry-After` (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 429 `too_many_attempts`, to be tried again after `secs`.
    pub fn too_many_attempts(secs: u64) -> Self {
        Self {
            retry_after: Some(secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed attempts; try again in {secs} s"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 401 `totp_required`: the password was right, and the account also needs a one-time code.
    pub fn totp_required() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "totp_required",
            "this account also needs a one-time code (or a recovery code)",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; the server log has the details",
        )
    }

    /// Maps a store error, logging the ones that are not the client's fault.
    pub fn from_store(err: StoreError, doing: &str) -> Self {
        match err {
            StoreError::NotFound { what } => Self::not_found(format!("{what} not found")),
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            StoreError::Invalid(message) => Self::bad_request(message),
            e @ StoreError::QuotaExceeded { .. } => {
                Self::new(StatusCode::CONFLICT, "quota_exceeded", e.to_string())
            }
            StoreError::NoCapacity => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_capacity",
                "no online agent has free capacity for a new session",
            ),
            e @ StoreError::NoUserHomeAgent => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_capacity",
                e.to_string(),
            ),
            e @ StoreError::HomeAgentUnavailable { .. } => Self::new(
                StatusCode::CONFLICT,
                "home_agent_unavailable",
                e.to_string(),
            ),
            e @ StoreError::HomeInUse { .. } => {
                Self::new(StatusCode::CONFLICT, "home_in_use", e.to_string())
            }
            e @ StoreError::HomeChoiceNeeded { .. } => {
                Self::new(StatusCode::CONFLICT, "home_choice_required", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "{doing} failed");
                Self::internal()
            }
        }
    }

    /// Maps a batched store call that was not carried out (see `crate::batch`): 503
    /// `shutting_down` while the replica stops, else 500 (logged with `doing`).
    pub(crate) fn from_batch(err: crate::batch::BatchError, doing: &str) -> Self {
        match err {
            crate::batch::BatchError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "this replica is shutting down; try again",
            ),
            crate::batch::BatchError::Failed(e) => {
                tracing::error!(error = %e, "{doing} failed");
                Self::internal()
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::from_store(err, "store call")
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            // Well-formed JSON of the wrong shape (missing or unknown fields, wrong types).
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            _ => "bad_request",
        };
        Self::new(rejection.status(), code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            rejection.body_text(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses_without_leaking_details() {
        let e = ApiError::from_store(StoreError::Corrupt("select * from secrets".into()), "test");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !e.message.contains("select"),
            "SQL text leaked: {}",
            e.message
        );
        let e = ApiError::from_store(StoreError::NoCapacity, "test");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "no_capacity")
        );
        let e = ApiError::from_store(StoreError::NotFound { what: "session" }, "test");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }
}
