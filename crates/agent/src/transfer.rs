//! File transfer: the agent's side of one `transfer_open` — an upload into, a download out of,
//! or a listing of the session's transfer folder (`Transfers/` in the session's home), carried
//! over its own data connection in the tagged frames of [`streamspace_proto::transfer`].
//!
//! The runtime says where the session's home is ([`Runtime::transfer_home`]); [`folder`] walks
//! it without following links. Limits are enforced here, on the bytes as they arrive, never
//! taken from what the control plane announced: an upload that passes `max_bytes` is refused
//! and its temporary file removed, so a failed upload leaves nothing half-written.

pub mod folder;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use streamspace_proto::transfer::{
    DATA_CHUNK_BYTES, Frame, TransferDirection, TransferFailure, failure_code,
};
use streamspace_proto::wire::TransferOpen;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::runtime::{Runtime, RuntimeError, TransferHome};
use crate::tunnel::DataSocket;
use folder::Folder;

/// How long the peer may stay silent (or not read) in the middle of a transfer.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Carries one transfer over `socket`, then closes it. Failures are told to the control plane
/// in the stream (an `error` frame), never only logged.
pub async fn carry(runtime: &dyn Runtime, open: &TransferOpen, mut socket: DataSocket) {
    let outcome = match runtime.transfer_home(open.session_id).await {
        Ok(home) => run(&home, open, &mut socket).await,
        Err(e) => Err(runtime_failure(e)),
    };
    match outcome {
        Ok(bytes) => tracing::info!(bytes, path = %open.path, "transfer done"),
        Err(failure) => {
            tracing::info!(code = %failure.code, message = %failure.message, path = %open.path, "transfer refused or failed");
            let _ = send(&mut socket, Frame::Error(failure)).await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
}

fn runtime_failure(e: RuntimeError) -> TransferFailure {
    let code = match &e {
        RuntimeError::TransferUnsupported(_) => failure_code::UNSUPPORTED,
        RuntimeError::UnknownSession(_) | RuntimeError::SessionFailed { .. } => {
            failure_code::NOT_RUNNING
        }
        _ => failure_code::FAILED,
    };
    TransferFailure::new(code, crate::Chain(&e).to_string())
}

async fn run(
    home: &TransferHome,
    open: &TransferOpen,
    socket: &mut DataSocket,
) -> Result<u64, TransferFailure> {
    let (path, owner, transfer) = (home.home.clone(), home.owner, open.transfer_id);
    let folder = blocking(move || Folder::open(&path, owner)).await?;
    match open.direction {
        TransferDirection::List => {
            let listing = blocking(move || folder.list()).await?;
            send(socket, Frame::Listing(listing)).await?;
            Ok(0)
        }
        TransferDirection::Download => {
            let path = open.path.clone();
            let (file, size) = blocking(move || folder.download(&path)).await?;
            if size > open.max_bytes {
                return Err(too_large(open.max_bytes));
            }
            send(socket, Frame::Header { size }).await?;
            download(tokio::fs::File::from_std(file), size, socket).await
        }
        TransferDirection::Upload => {
            let path = open.path.clone();
            let mut upload = blocking(move || folder.upload(&path, transfer)).await?;
            let file = upload.file.take().ok_or_else(|| failed("no file"))?;
            send(socket, Frame::Ready).await?;
            let mut file = tokio::fs::File::from_std(file);
            let bytes = receive(&mut file, open.max_bytes, socket).await?;
            upload.file = Some(file.into_std().await);
            blocking(move || upload.commit()).await?;
            send(socket, Frame::Done { bytes }).await?;
            Ok(bytes)
        }
    }
}

/// Sends exactly `size` bytes of `file` (a file that grows meanwhile is cut at the size
/// announced; one that shrinks fails the transfer).
async fn download(
    mut file: tokio::fs::File,
    size: u64,
    socket: &mut DataSocket,
) -> Result<u64, TransferFailure> {
    let mut sent = 0u64;
    let mut buf = vec![0u8; DATA_CHUNK_BYTES];
    while sent < size {
        let want = usize::try_from(size - sent).map_or(buf.len(), |left| left.min(buf.len()));
        let n = file
            .read(&mut buf[..want])
            .await
            .map_err(|e| failed(format!("reading the file: {e}")))?;
        if n == 0 {
            return Err(failed("the file became shorter while it was being read"));
        }
        send_raw(socket, Frame::encode_data(&buf[..n])).await?;
        sent += n as u64;
    }
    send(socket, Frame::Done { bytes: sent }).await?;
    Ok(sent)
}

/// Writes `data` frames to `file` until `end`; refuses the upload once it passes `max_bytes`.
async fn receive(
    file: &mut tokio::fs::File,
    max_bytes: u64,
    socket: &mut DataSocket,
) -> Result<u64, TransferFailure> {
    let mut written = 0u64;
    loop {
        let message = match tokio::time::timeout(IDLE_TIMEOUT, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(failed(format!("the data connection failed: {e}"))),
            Ok(None) => return Err(failed("the data connection closed before the end")),
            Err(_) => return Err(failed("no data for too long")),
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Close(_) => return Err(failed("the upload was abandoned")),
            Message::Text(_) => return Err(failed("a text frame on a transfer")),
            _ => continue,
        };
        match Frame::decode(&bytes) {
            Ok(Frame::Data(data)) => {
                written += data.len() as u64;
                if written > max_bytes {
                    return Err(too_large(max_bytes));
                }
                file.write_all(&data)
                    .await
                    .map_err(|e| failed(format!("writing the file: {e}")))?;
            }
            Ok(Frame::End) => {
                file.flush()
                    .await
                    .map_err(|e| failed(format!("writing the file: {e}")))?;
                return Ok(written);
            }
            Ok(Frame::Error(failure)) => return Err(failure),
            Ok(other) => return Err(failed(format!("unexpected frame {other:?}"))),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
}

fn too_large(max_bytes: u64) -> TransferFailure {
    TransferFailure::new(
        failure_code::TOO_LARGE,
        format!("the file is larger than the limit of {max_bytes} bytes"),
    )
}

fn failed(message: impl Into<String>) -> TransferFailure {
    TransferFailure::new(failure_code::FAILED, message)
}

async fn send(socket: &mut DataSocket, frame: Frame) -> Result<(), TransferFailure> {
    send_raw(socket, frame.encode()).await
}

async fn send_raw(socket: &mut DataSocket, bytes: Vec<u8>) -> Result<(), TransferFailure> {
    match tokio::time::timeout(IDLE_TIMEOUT, socket.send(Message::binary(bytes))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(failed(format!("the data connection failed: {e}"))),
        Err(_) => Err(failed("the control plane stopped reading the transfer")),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TransferFailure> + Send + 'static,
) -> Result<T, TransferFailure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| failed(format!("the file operation failed: {e}")))?
}
