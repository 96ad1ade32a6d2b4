//! File transfer into and out of a session's transfer folder:
//! `GET /api/v1/sessions/{id}/files` (the listing), `PUT …/files/{*path}` (upload, the body
//! streamed) and `GET …/files/{*path}` (download, streamed back).
//!
//! Each request opens one transfer exactly as a viewer opens a stream: a pending entry under a
//! one-time stream token, `transfer_open` to the session's agent (through its replica when it
//! is held elsewhere), and the agent's data connection handed to the request when it arrives —
//! forwarded between replicas by the same one hop as a viewer's ([`super::remote`]). The frames
//! then carry the file and the outcome ([`streamspace_proto::transfer`]).
//!
//! Who may: the session's owner, operators and admins (`policy::Action::TransferFiles`); which
//! way and how much: the session rules (`crate::rules::effective`: the template's, the user's
//! groups', the server's defaults). Every upload and download is
//! audited with who, the session, the direction, the path, the bytes and the outcome.

mod stream;

use axum::Json;
use axum::body::Body;
use axum::extract::ws::WebSocket;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use streamspace_proto::api::{EffectiveRules, Session, SessionState, TransferPolicy};
use streamspace_proto::transfer::{
    FileListing, Frame, TransferDirection, TransferFailure, UploadResult, check_path, failure_code,
};
use streamspace_proto::wire::{ServerMessage, TransferOpen};
use uuid::Uuid;

use super::token;
use crate::auth::Actor;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::hub::DeliveryError;
use crate::policy;
use crate::state::AppState;
use crate::streams::DataConn;

pub(crate) use stream::Outcome;

/// Whether `policy` lets files travel `direction` (a listing needs either way).
fn allows(policy: TransferPolicy, direction: TransferDirection) -> bool {
    match direction {
        TransferDirection::Upload => policy.upload(),
        TransferDirection::Download => policy.download(),
        TransferDirection::List => policy != TransferPolicy::None,
    }
}

/// `GET /api/v1/sessions/{id}/files`: the transfer folder's entries.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/files",
    operation_id = "sessions_files_list",
    tag = "files",
    summary = "List the session's transfer folder",
    params(("id" = uuid::Uuid, Path, description = "the session's id")),
    responses(
        (status = 200, description = "The folder's files and directories", body = streamspace_proto::transfer::FileListing),
        (status = 400, description = "A path parameter is invalid (`bad_request`)", body = streamspace_proto::api::ErrorBody),
        (status = 403, description = "Transfers are off for this session (`transfer_forbidden`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not running (`session_not_running`)", body = streamspace_proto::api::ErrorBody),
        (status = 501, description = "The session's agent or runtime cannot carry files (`transfer_unsupported`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "The agent cannot be reached (`agent_unavailable`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(crate) async fn list(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<FileListing>, ApiError> {
    let (session, rules) = admit(&app, &actor, id, TransferDirection::List).await?;
    let mut socket = open(&app, &session, TransferDirection::List, "", 0).await?;
    match stream::next_frame(&mut socket, app.config.tunnel.open_timeout).await {
        Ok(Frame::Listing(listing)) => Ok(Json(listing)),
        Ok(Frame::Error(failure)) => Err(failure_error(&failure, rules.transfer_max_bytes)),
        Ok(other) => Err(unexpected(&other)),
        Err(failure) => Err(failure_error(&failure, rules.transfer_max_bytes)),
    }
}

/// `PUT /api/v1/sessions/{id}/files/{path}`: the body becomes the file `path` in the transfer
/// folder (replacing one of that name), all or nothing.
#[utoipa::path(
    put,
    path = "/api/v1/sessions/{id}/files/{path}",
    operation_id = "sessions_files_upload",
    tag = "files",
    summary = "Upload a file into the session's transfer folder",
    params(
        ("id" = uuid::Uuid, Path, description = "the session's id"),
        ("path" = String, Path, description = "the file, relative to the transfer folder (`docs/a.txt`)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "The file is in place", body = streamspace_proto::transfer::UploadResult),
        (status = 400, description = "The path is not allowed (`invalid_path`)", body = streamspace_proto::api::ErrorBody),
        (status = 403, description = "Uploads are off for this session (`transfer_forbidden`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not running (`session_not_running`)", body = streamspace_proto::api::ErrorBody),
        (status = 413, description = "The file is over the size limit (`too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 501, description = "The session's agent or runtime cannot carry files (`transfer_unsupported`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "The agent cannot be reached (`agent_unavailable`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(crate) async fn upload(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath((id, path)): ApiPath<(Uuid, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadResult>), ApiError> {
    // A refusal comes before the body is read: its start is read first (see `discard`).
    let (session, rules) = match admit_upload(&app, &actor, id, &path, &headers).await {
        Ok(admitted) => admitted,
        Err(e) => {
            discard(body).await;
            return Err(e);
        }
    };
    let record = stream::Record::new(&app, &actor, id, TransferDirection::Upload, &path);
    let socket = open(
        &app,
        &session,
        TransferDirection::Upload,
        &path,
        rules.transfer_max_bytes,
    )
    .await;
    let outcome = match socket {
        Ok(socket) => {
            stream::upload(socket, body, rules.transfer_max_bytes, &app.config.tunnel).await
        }
        Err(e) => {
            discard(body).await;
            Err(Outcome::Refused(e))
        }
    };
    match outcome {
        Ok(bytes) => {
            record.finish("done", bytes).await;
            Ok((StatusCode::CREATED, Json(UploadResult { path, bytes })))
        }
        Err(outcome) => {
            let (e, bytes) = outcome.into_error(rules.transfer_max_bytes);
            record.finish(e.code, bytes).await;
            Err(e)
        }
    }
}

/// `GET /api/v1/sessions/{id}/files/{path}`: the file, streamed, as an attachment.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/files/{path}",
    operation_id = "sessions_files_download",
    tag = "files",
    summary = "Download a file from the session's transfer folder",
    params(
        ("id" = uuid::Uuid, Path, description = "the session's id"),
        ("path" = String, Path, description = "the file, relative to the transfer folder"),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "The path is not allowed (`invalid_path`)", body = streamspace_proto::api::ErrorBody),
        (status = 403, description = "Downloads are off for this session (`transfer_forbidden`)", body = streamspace_proto::api::ErrorBody),
        (status = 404, description = "No such session or file", body = streamspace_proto::api::ErrorBody),
        (status = 409, description = "The session is not running (`session_not_running`)", body = streamspace_proto::api::ErrorBody),
        (status = 413, description = "The file is over the size limit (`too_large`)", body = streamspace_proto::api::ErrorBody),
        (status = 501, description = "The session's agent or runtime cannot carry files (`transfer_unsupported`)", body = streamspace_proto::api::ErrorBody),
        (status = 503, description = "The agent cannot be reached (`agent_unavailable`)", body = streamspace_proto::api::ErrorBody),
    ),
    security(("bearer" = []), ("session_cookie" = [])),
)]
pub(crate) async fn download(
    State(app): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiPath((id, path)): ApiPath<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let (session, rules) = admit(&app, &actor, id, TransferDirection::Download).await?;
    valid_path(&path)?;
    let record = stream::Record::new(&app, &actor, id, TransferDirection::Download, &path);
    let opened = async {
        let mut socket = open(
            &app,
            &session,
            TransferDirection::Download,
            &path,
            rules.transfer_max_bytes,
        )
        .await
        .map_err(Outcome::Refused)?;
        match stream::next_frame(&mut socket, app.config.tunnel.open_timeout).await {
            Ok(Frame::Header { size }) => Ok((socket, size)),
            Ok(Frame::Error(failure)) | Err(failure) => Err(Outcome::Failed(failure, 0)),
            Ok(other) => Err(Outcome::Refused(unexpected(&other))),
        }
    };
    let (socket, size) = match opened.await {
        Ok(opened) => opened,
        Err(outcome) => {
            let (e, bytes) = outcome.into_error(rules.transfer_max_bytes);
            record.finish(e.code, bytes).await;
            return Err(e);
        }
    };
    let name = path.rsplit('/').next().unwrap_or(&path).to_owned();
    let body = Body::from_stream(stream::download(
        socket,
        size,
        app.config.tunnel.send_timeout,
        record,
    ));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&name)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The session, checked: the actor may transfer, it runs, the rules allow `direction`.
async fn admit(
    app: &AppState,
    actor: &Actor,
    id: Uuid,
    direction: TransferDirection,
) -> Result<(Session, EffectiveRules), ApiError> {
    let session = app
        .store
        .get_session(id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a session"))?;
    actor.may(
        policy::Action::TransferFiles,
        policy::Resource::Session(&session),
    )?;
    if session.state != SessionState::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "session_not_running",
            format!("session {id} is {}, not running", session.state),
        ));
    }
    let rules = crate::rules::effective(app, &session, &actor.principal).await?;
    if !allows(rules.file_transfer, direction) {
        let what = match direction {
            TransferDirection::Upload => "uploads into this session are not allowed",
            TransferDirection::Download => "downloads from this session are not allowed",
            TransferDirection::List => "file transfer is off for this session",
        };
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "transfer_forbidden",
            what,
        ));
    }
    Ok((session, rules))
}

fn valid_path(path: &str) -> Result<(), ApiError> {
    check_path(path).map(|_| ()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("`path`: {e}"),
        )
    })
}

/// Asks the session's agent for a transfer and waits for its data connection.
async fn open(
    app: &AppState,
    session: &Session,
    direction: TransferDirection,
    path: &str,
    max_bytes: u64,
) -> Result<WebSocket, ApiError> {
    let agent_id = session.agent_id.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "session_not_running",
            "the session has no agent",
        )
    })?;
    let (open, waiting) = app.tunnels.counts();
    if open + waiting >= app.config.tunnel.max_streams {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "this replica carries as many streams as it is configured for",
        ));
    }
    let transfer_id = Uuid::now_v7();
    let stream_token = token::new_stream_token();
    let (delivered, _guard) = app.tunnels.expect(
        stream_token.clone(),
        transfer_id,
        session.id,
        agent_id.clone(),
    );
    let message = TransferOpen {
        transfer_id,
        session_id: session.id,
        token: stream_token,
        direction,
        path: path.to_owned(),
        max_bytes,
    };
    let sent = match app
        .hub
        .send(&agent_id, ServerMessage::TransferOpen(message.clone()))
        .await
    {
        Ok(()) => Ok(()),
        Err(DeliveryError::NotConnected(_)) => app.cluster.open_transfer(&agent_id, message).await,
        Err(e @ DeliveryError::Unsupported(_)) => {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                failure_code::UNSUPPORTED,
                e.to_string(),
            ));
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            format!("the session's agent cannot be reached: {e}"),
        ));
    }
    match tokio::time::timeout(app.config.tunnel.open_timeout, delivered).await {
        Ok(Ok(Ok(DataConn::WebSocket(socket)))) => Ok(*socket),
        // A transfer's outcome travels in tagged frames, which a raw stream does not have.
        Ok(Ok(Ok(DataConn::Raw(_)))) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "agent_unavailable",
            "the agent opened the transfer as a raw stream; transfers need a WebSocket",
        )),
        Ok(Ok(Err(reason))) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "agent_unavailable",
            reason,
        )),
        Ok(Err(_)) | Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "agent_unavailable",
            "the agent did not open the transfer in time",
        )),
    }
}

/// Whether `actor` may upload to `path` of session `id` a body of the declared length: the
/// session and its rules when so.
async fn admit_upload(
    app: &AppState,
    actor: &Actor,
    id: Uuid,
    path: &str,
    headers: &HeaderMap,
) -> Result<(Session, EffectiveRules), ApiError> {
    let (session, rules) = admit(app, actor, id, TransferDirection::Upload).await?;
    valid_path(path)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > rules.transfer_max_bytes) {
        return Err(too_large(rules.transfer_max_bytes));
    }
    Ok((session, rules))
}

/// How much of a refused upload is read and thrown away before the answer.
const DISCARDED_BYTES: u64 = 8 * 1024 * 1024;
/// How long that may take.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads and throws away the start of a body that is refused before it is read (at most
/// [`DISCARDED_BYTES`], for at most [`DISCARD_TIME`]): a client still sending it then reads
/// the answer, where a connection closed under its feet would give it only a reset — and a
/// client that reuses its connection for the next request does not find it closed under that
/// one (the server closes a connection whose request body was left unread). A larger body
/// still gets the reset.
async fn discard(body: Body) {
    use futures_util::StreamExt;
    let mut data = body.into_data_stream();
    let mut read = 0u64;
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        while read < DISCARDED_BYTES {
            match data.next().await {
                Some(Ok(chunk)) => read += chunk.len() as u64,
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
}

fn too_large(max_bytes: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        failure_code::TOO_LARGE,
        format!("the file is larger than the limit of {max_bytes} bytes"),
    )
}

fn unexpected(frame: &Frame) -> ApiError {
    tracing::warn!(?frame, "unexpected transfer frame from the agent");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        failure_code::FAILED,
        "the agent answered the transfer out of turn",
    )
}

/// The API's answer to what the agent reported.
fn failure_error(failure: &TransferFailure, max_bytes: u64) -> ApiError {
    let (status, code) = match failure.code.as_str() {
        failure_code::INVALID_PATH => (StatusCode::BAD_REQUEST, failure_code::INVALID_PATH),
        failure_code::NOT_FOUND => (StatusCode::NOT_FOUND, "not_found"),
        failure_code::TOO_LARGE => return too_large(max_bytes),
        failure_code::UNSUPPORTED => (StatusCode::NOT_IMPLEMENTED, failure_code::UNSUPPORTED),
        failure_code::NOT_RUNNING => (StatusCode::CONFLICT, failure_code::NOT_RUNNING),
        _ => (StatusCode::BAD_GATEWAY, failure_code::FAILED),
    };
    ApiError::new(status, code, failure.message.clone())
}

/// `attachment` with the name as ASCII (others replaced) and as UTF-8 (RFC 6266).
fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_allow_their_directions_only() {
        use TransferDirection::{Download, List, Upload};
        let cases = [
            (TransferPolicy::Both, [true, true, true]),
            (TransferPolicy::Upload, [true, false, true]),
            (TransferPolicy::Download, [false, true, true]),
            (TransferPolicy::None, [false, false, false]),
        ];
        for (policy, expected) in cases {
            let got = [Upload, Download, List].map(|d| allows(policy, d));
            assert_eq!(got, expected, "{policy:?}");
        }
    }

    #[test]
    fn attachment_names_are_quoted_safely() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert_eq!(
            content_disposition("ü\"x"),
            "attachment; filename=\"__x\"; filename*=UTF-8''%C3%BC%22x"
        );
    }
}
