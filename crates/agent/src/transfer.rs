//! File transfer: the agent's side of one `transfer_open` — an upload into, a download out of,
//! or a listing of the session's transfer folder (`Transfers/` in the session's home), carried
//! over its own data connection in the tagged frames of [`streamspace_proto::transfer`].
//!
//! The runtime hands over the session's folder as a [`TransferFolder`] ([`Runtime::transfer_folder`]):
//! a directory on the agent's own file system ([`LocalFolder`], walked by [`folder`] without
//! following links) or a container's file system reached through its engine (the docker
//! runtime's). This module owns the frames and the limits, once for all of them: limits are
//! enforced here, on the bytes as they arrive, never taken from what the control plane
//! announced — an upload that passes `max_bytes` is refused and abandoned, and an abandoned
//! upload leaves nothing behind (each folder guarantees that for its own storage).

pub mod folder;
pub mod remote;

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use streamspace_proto::transfer::{
    DATA_CHUNK_BYTES, FileListing, Frame, TransferDirection, TransferFailure, failure_code,
};
use streamspace_proto::wire::TransferOpen;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::runtime::{Runtime, RuntimeError};
use crate::tunnel::DataSocket;
use folder::{Folder, Owner};

/// How long the peer may stay silent (or not read) in the middle of a transfer.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A session's transfer folder, wherever it lives. Paths are relative to the folder and are
/// checked by each implementation ([`streamspace_proto::transfer::check_path`], then its own
/// walk that never follows a link out of the folder).
#[async_trait]
pub trait TransferFolder: Send + Sync {
    /// The folder's files and directories (not links), by name.
    async fn list(&self) -> Result<FileListing, TransferFailure>;

    /// Opens the regular file at `path` for reading.
    async fn download(&self, path: &str) -> Result<Download, TransferFailure>;

    /// Starts an upload to `path` (replacing a regular file of that name, never a directory or
    /// a link). Nothing is visible at `path` before [`Upload::commit`]; an upload dropped
    /// before that leaves nothing behind.
    async fn upload(
        &self,
        path: &str,
        transfer: uuid::Uuid,
    ) -> Result<Box<dyn Upload>, TransferFailure>;
}

/// A file being downloaded: its size and exactly that many bytes.
pub struct Download {
    pub size: u64,
    pub body: Pin<Box<dyn AsyncRead + Send>>,
}

/// An upload in progress (see [`TransferFolder::upload`]).
#[async_trait]
pub trait Upload: Send {
    /// Appends `data` to the file.
    async fn write(&mut self, data: &[u8]) -> Result<(), TransferFailure>;

    /// Puts the whole file in place.
    async fn commit(self: Box<Self>) -> Result<(), TransferFailure>;
}

/// The transfer folder in a directory of the agent's own file system: `home`/`Transfers`.
#[derive(Debug, Clone)]
pub struct LocalFolder {
    /// The session's home (trusted: it comes from the agent's configuration or the password
    /// database).
    pub home: PathBuf,
    /// Who owns what a transfer creates (`None`: the agent's own user).
    pub owner: Option<Owner>,
}

impl LocalFolder {
    async fn open(&self) -> Result<Folder, TransferFailure> {
        let (home, owner) = (self.home.clone(), self.owner);
        blocking(move || Folder::open(&home, owner)).await
    }
}

#[async_trait]
impl TransferFolder for LocalFolder {
    async fn list(&self) -> Result<FileListing, TransferFailure> {
        let folder = self.open().await?;
        blocking(move || folder.list()).await
    }

    async fn download(&self, path: &str) -> Result<Download, TransferFailure> {
        let folder = self.open().await?;
        let path = path.to_owned();
        let (file, size) = blocking(move || folder.download(&path)).await?;
        Ok(Download {
            size,
            body: Box::pin(tokio::fs::File::from_std(file)),
        })
    }

    async fn upload(
        &self,
        path: &str,
        transfer: uuid::Uuid,
    ) -> Result<Box<dyn Upload>, TransferFailure> {
        let folder = self.open().await?;
        let path = path.to_owned();
        let mut upload = blocking(move || folder.upload(&path, transfer)).await?;
        let file = upload.file.take().ok_or_else(|| failed("no file"))?;
        Ok(Box::new(LocalUpload {
            file: tokio::fs::File::from_std(file),
            upload,
        }))
    }
}

/// An upload into a [`LocalFolder`]: the temporary file, renamed into place at commit (and
/// removed by [`folder::Upload`]'s drop otherwise).
struct LocalUpload {
    file: tokio::fs::File,
    upload: folder::Upload,
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, data: &[u8]) -> Result<(), TransferFailure> {
        self.file
            .write_all(data)
            .await
            .map_err(|e| failed(format!("writing the file: {e}")))
    }

    async fn commit(self: Box<Self>) -> Result<(), TransferFailure> {
        let Self {
            mut file,
            mut upload,
        } = *self;
        file.flush()
            .await
            .map_err(|e| failed(format!("writing the file: {e}")))?;
        upload.file = Some(file.into_std().await);
        blocking(move || upload.commit()).await
    }
}

/// Carries one transfer over `socket`, then closes it. Failures are told to the control plane
/// in the stream (an `error` frame), never only logged.
pub async fn carry(runtime: &dyn Runtime, open: &TransferOpen, mut socket: DataSocket) {
    let outcome = match runtime.transfer_folder(open.session_id).await {
        Ok(folder) => run(folder.as_ref(), open, &mut socket).await,
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
    folder: &dyn TransferFolder,
    open: &TransferOpen,
    socket: &mut DataSocket,
) -> Result<u64, TransferFailure> {
    match open.direction {
        TransferDirection::List => {
            let listing = folder.list().await?;
            send(socket, Frame::Listing(listing)).await?;
            Ok(0)
        }
        TransferDirection::Download => {
            let download = folder.download(&open.path).await?;
            if download.size > open.max_bytes {
                return Err(too_large(open.max_bytes));
            }
            send(
                socket,
                Frame::Header {
                    size: download.size,
                },
            )
            .await?;
            send_file(download.body, download.size, socket).await
        }
        TransferDirection::Upload => {
            let mut upload = folder.upload(&open.path, open.transfer_id).await?;
            send(socket, Frame::Ready).await?;
            let bytes = receive(upload.as_mut(), open.max_bytes, socket).await?;
            upload.commit().await?;
            send(socket, Frame::Done { bytes }).await?;
            Ok(bytes)
        }
    }
}

/// Sends exactly `size` bytes of `file` (a file that grows meanwhile is cut at the size
/// announced; one that shrinks fails the transfer).
async fn send_file(
    mut file: Pin<Box<dyn AsyncRead + Send>>,
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

/// Writes `data` frames to `upload` until `end`; refuses the upload once it passes `max_bytes`.
async fn receive(
    upload: &mut dyn Upload,
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
                upload.write(&data).await?;
            }
            Ok(Frame::End) => return Ok(written),
            Ok(Frame::Error(failure)) => return Err(failure),
            Ok(other) => return Err(failed(format!("unexpected frame {other:?}"))),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
}

pub(crate) fn too_large(max_bytes: u64) -> TransferFailure {
    TransferFailure::new(
        failure_code::TOO_LARGE,
        format!("the file is larger than the limit of {max_bytes} bytes"),
    )
}

pub(crate) fn failed(message: impl Into<String>) -> TransferFailure {
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
