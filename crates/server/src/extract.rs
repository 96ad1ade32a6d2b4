//! Request extractors whose rejections are [`ApiError`]s, so even a malformed body, path or
//! query answers with `{"error":{"code","message"}}`. Shared by every HTTP endpoint (the API,
//! the tunnel).

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// A JSON request body whose rejection is an [`ApiError`].
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub T);

/// Path parameters whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub T);

/// Query parameters whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub T);
