//! A transfer folder in another process: the `kubernetes` runtime's sessions keep theirs in a
//! volume of the session's pod, which only the pod's own containers can see, so a small
//! sidecar in the pod (`streamspace transfer-sidecar`, the agent's image) serves it to the
//! agent over the pod network.
//!
//! One TCP connection carries one operation. Control messages are JSON, each preceded by its
//! length as a big-endian `u32` (a request at most [`MAX_REQUEST_BYTES`], a reply at most
//! [`MAX_MESSAGE_BYTES`]):
//!
//! 1. the agent sends a [`Request`]: the session's transfer token and the operation;
//! 2. the sidecar answers with a [`Reply`]:
//!    - a listing: [`Reply::Listing`];
//!    - a download: [`Reply::File`] with the size, then exactly that many raw bytes;
//!    - an upload: [`Reply::Ready`], then the agent sends chunks (a `u32` length, then at most
//!      [`DATA_CHUNK_BYTES`] bytes) ended by a chunk of length 0, and the sidecar puts the file
//!      in place and answers [`Reply::Done`];
//!    - anything refused or failed: [`Reply::Failed`], and the connection ends.
//!
//! The sidecar serves the folder with [`LocalFolder`], so paths are checked and walked exactly
//! as the process runtime does (no `..`, no link followed out of the folder); the limits stay
//! the agent's ([`super::carry`]), which counts every byte. An upload whose connection ends
//! before its final chunk leaves nothing behind. A wrong token gets `Failed` and nothing else;
//! tokens are compared in constant time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use streamspace_proto::transfer::{DATA_CHUNK_BYTES, FileListing, TransferFailure, failure_code};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{Download, LocalFolder, TransferFolder, Upload, failed};

/// The largest control message either side accepts (a listing of
/// [`streamspace_proto::transfer::MAX_LISTING_ENTRIES`] entries fits many times over).
pub const MAX_MESSAGE_BYTES: u32 = 4 * 1024 * 1024;
/// The largest request the sidecar reads, before it knows who is asking: a token and a path
/// (at most [`streamspace_proto::transfer::MAX_PATH_BYTES`]) fit many times over.
pub const MAX_REQUEST_BYTES: u32 = 16 * 1024;
/// How long either side waits for the other's next message or chunk.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent waits for the sidecar to accept its connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Operations one sidecar carries at once; more wait for a turn.
const MAX_CONNECTIONS: usize = 16;

/// What the agent asks of the sidecar.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// The session's transfer token.
    pub token: String,
    pub operation: Operation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    List,
    Download { path: String },
    Upload { path: String, transfer: uuid::Uuid },
}

/// The sidecar's answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Listing { listing: FileListing },
    File { size: u64 },
    Ready,
    Done,
    Failed { failure: TransferFailure },
}

async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    out: &mut W,
    message: &T,
) -> Result<(), TransferFailure> {
    let body = serde_json::to_vec(message).map_err(|e| failed(format!("encoding: {e}")))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| *n <= MAX_MESSAGE_BYTES)
        .ok_or_else(|| failed("a message too large for the transfer sidecar"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    out.write_all(&frame).await.map_err(connection_failed)?;
    out.flush().await.map_err(connection_failed)
}

async fn read_message<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    input: &mut R,
    max: u32,
) -> Result<T, TransferFailure> {
    let len = timed(input.read_u32()).await?;
    if len > max {
        return Err(failed(format!(
            "a message of {len} bytes from the transfer peer"
        )));
    }
    let mut body = vec![0u8; len as usize];
    timed(input.read_exact(&mut body)).await?;
    serde_json::from_slice(&body).map_err(|e| failed(format!("an unreadable message: {e}")))
}

/// `operation` within [`IDLE_TIMEOUT`], its I/O error as a transfer failure.
async fn timed<T>(
    operation: impl Future<Output = std::io::Result<T>>,
) -> Result<T, TransferFailure> {
    match tokio::time::timeout(IDLE_TIMEOUT, operation).await {
        Ok(result) => result.map_err(connection_failed),
        Err(_) => Err(failed("the transfer peer was silent for too long")),
    }
}

fn connection_failed(e: std::io::Error) -> TransferFailure {
    failed(format!("the connection to the transfer peer failed: {e}"))
}

// --- The sidecar's side ---------------------------------------------------------------------

/// Serves `folder` to whoever presents `token`, until the listener fails.
pub async fn serve(
    listener: TcpListener,
    folder: LocalFolder,
    token: String,
) -> std::io::Result<()> {
    let shared = Arc::new((folder, token));
    let turns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = listener.accept().await?;
        let (shared, turns) = (shared.clone(), turns.clone());
        tokio::spawn(async move {
            let Ok(_turn) = turns.acquire_owned().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let (folder, token) = &*shared;
            match answer(stream, folder, token).await {
                Ok(()) => {}
                Err(failure) => {
                    tracing::info!(%peer, code = %failure.code, message = %failure.message, "transfer refused or failed");
                }
            }
        });
    }
}

/// Carries one operation on `stream`; a failure is also told to the peer.
async fn answer(
    stream: TcpStream,
    folder: &LocalFolder,
    token: &str,
) -> Result<(), TransferFailure> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let outcome = operate(&mut read, &mut write, folder, token).await;
    if let Err(failure) = &outcome {
        let reply = Reply::Failed {
            failure: failure.clone(),
        };
        let _ = write_message(&mut write, &reply).await;
    }
    let _ = write.shutdown().await;
    outcome
}

async fn operate<R, W>(
    read: &mut R,
    write: &mut W,
    folder: &LocalFolder,
    token: &str,
) -> Result<(), TransferFailure>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let request: Request = read_message(read, MAX_REQUEST_BYTES).await?;
    if !bool::from(request.token.as_bytes().ct_eq(token.as_bytes())) {
        return Err(TransferFailure::new(
            failure_code::FAILED,
            "the transfer sidecar refused the agent's token",
        ));
    }
    match request.operation {
        Operation::List => {
            let listing = folder.list().await?;
            write_message(write, &Reply::Listing { listing }).await
        }
        Operation::Download { path } => {
            let download = folder.download(&path).await?;
            write_message(
                write,
                &Reply::File {
                    size: download.size,
                },
            )
            .await?;
            let mut body = download.body.take(download.size);
            let copied = tokio::io::copy(&mut body, write)
                .await
                .map_err(connection_failed)?;
            if copied < download.size {
                return Err(failed("the file became shorter while it was being read"));
            }
            write.flush().await.map_err(connection_failed)
        }
        Operation::Upload { path, transfer } => {
            let mut upload = folder.upload(&path, transfer).await?;
            write_message(write, &Reply::Ready).await?;
            let mut chunk = vec![0u8; DATA_CHUNK_BYTES];
            loop {
                let len = timed(read.read_u32()).await? as usize;
                if len == 0 {
                    break;
                }
                if len > DATA_CHUNK_BYTES {
                    return Err(failed(format!("a chunk of {len} bytes from the agent")));
                }
                timed(read.read_exact(&mut chunk[..len])).await?;
                upload.write(&chunk[..len]).await?;
            }
            upload.commit().await?;
            write_message(write, &Reply::Done).await
        }
    }
}

// --- The agent's side -----------------------------------------------------------------------

/// A transfer folder served by a sidecar at `address` (`host:port`).
#[derive(Clone)]
pub struct RemoteFolder {
    address: String,
    token: String,
}

impl std::fmt::Debug for RemoteFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFolder")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

type Reader = BufReader<tokio::net::tcp::OwnedReadHalf>;
type Writer = tokio::net::tcp::OwnedWriteHalf;

impl RemoteFolder {
    pub fn new(address: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token: token.into(),
        }
    }

    /// Connects, sends `operation` and reads the first reply (a `Failed` one as the error).
    async fn ask(&self, operation: Operation) -> Result<(Reply, Reader, Writer), TransferFailure> {
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.address.as_str()))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    return Err(failed(format!(
                        "cannot reach the session's transfer sidecar at {}: {e}",
                        self.address
                    )));
                }
                Err(_) => {
                    return Err(failed(format!(
                        "the session's transfer sidecar at {} did not answer",
                        self.address
                    )));
                }
            };
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let request = Request {
            token: self.token.clone(),
            operation,
        };
        write_message(&mut write, &request).await?;
        match read_message(&mut read, MAX_MESSAGE_BYTES).await? {
            Reply::Failed { failure } => Err(failure),
            reply => Ok((reply, read, write)),
        }
    }
}

fn unexpected(reply: &Reply) -> TransferFailure {
    failed(format!(
        "the transfer sidecar answered out of turn: {reply:?}"
    ))
}

#[async_trait]
impl TransferFolder for RemoteFolder {
    async fn list(&self) -> Result<FileListing, TransferFailure> {
        match self.ask(Operation::List).await? {
            (Reply::Listing { listing }, _, _) => Ok(listing),
            (reply, _, _) => Err(unexpected(&reply)),
        }
    }

    async fn download(&self, path: &str) -> Result<Download, TransferFailure> {
        let path = path.to_owned();
        match self.ask(Operation::Download { path }).await? {
            (Reply::File { size }, read, _write) => Ok(Download {
                size,
                body: Box::pin(read.take(size)),
            }),
            (reply, _, _) => Err(unexpected(&reply)),
        }
    }

    async fn upload(
        &self,
        path: &str,
        transfer: uuid::Uuid,
    ) -> Result<Box<dyn Upload>, TransferFailure> {
        let path = path.to_owned();
        match self.ask(Operation::Upload { path, transfer }).await? {
            (Reply::Ready, read, write) => Ok(Box::new(RemoteUpload { read, write })),
            (reply, _, _) => Err(unexpected(&reply)),
        }
    }
}

/// An upload streaming to the sidecar; dropped before [`Upload::commit`], its connection
/// closes without the final chunk and the sidecar discards the file.
struct RemoteUpload {
    read: Reader,
    write: Writer,
}

#[async_trait]
impl Upload for RemoteUpload {
    async fn write(&mut self, data: &[u8]) -> Result<(), TransferFailure> {
        for chunk in data.chunks(DATA_CHUNK_BYTES) {
            let len = u32::try_from(chunk.len()).expect("a chunk is at most DATA_CHUNK_BYTES");
            self.write
                .write_all(&len.to_be_bytes())
                .await
                .map_err(connection_failed)?;
            self.write
                .write_all(chunk)
                .await
                .map_err(connection_failed)?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), TransferFailure> {
        let Self {
            mut read,
            mut write,
        } = *self;
        write
            .write_all(&0u32.to_be_bytes())
            .await
            .map_err(connection_failed)?;
        write.flush().await.map_err(connection_failed)?;
        match read_message(&mut read, MAX_MESSAGE_BYTES).await? {
            Reply::Done => Ok(()),
            Reply::Failed { failure } => Err(failure),
            reply => Err(unexpected(&reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamspace_proto::transfer::TRANSFER_FOLDER;

    async fn sidecar(
        home: &std::path::Path,
    ) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let folder = LocalFolder {
            home: home.to_path_buf(),
            owner: None,
        };
        let task = tokio::spawn(async move {
            let _ = serve(listener, folder, "the-token".to_owned()).await;
        });
        Ok((address, task))
    }

    async fn read_all(download: Download) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut body = download.body;
        body.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn uploads_lists_and_downloads_through_the_sidecar() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let (address, _task) = sidecar(home.path()).await?;
        let remote = RemoteFolder::new(&address, "the-token");

        // More than one chunk, and not a multiple of it.
        let content: Vec<u8> = (0..(DATA_CHUNK_BYTES * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut upload = remote
            .upload("report.bin", uuid::Uuid::from_u128(7))
            .await?;
        upload.write(&content).await?;
        upload.commit().await?;
        let on_disk = std::fs::read(home.path().join(TRANSFER_FOLDER).join("report.bin"))?;
        assert_eq!(on_disk, content);

        let listing = remote.list().await?;
        let names: Vec<&str> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["report.bin"]);

        let download = remote.download("report.bin").await?;
        assert_eq!(download.size, content.len() as u64);
        assert_eq!(read_all(download).await?, content);
        Ok(())
    }

    #[tokio::test]
    async fn a_wrong_token_gets_nothing() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let (address, _task) = sidecar(home.path()).await?;
        let remote = RemoteFolder::new(&address, "not-the-token");
        let Err(failure) = remote.list().await else {
            anyhow::bail!("a wrong token was served");
        };
        assert!(failure.message.contains("token"), "{failure:?}");
        assert!(remote.upload("x", uuid::Uuid::from_u128(7)).await.is_err());
        assert!(
            !home.path().join(TRANSFER_FOLDER).join("x").exists(),
            "nothing written for a wrong token"
        );
        Ok(())
    }

    #[tokio::test]
    async fn paths_out_of_the_folder_are_refused_as_locally() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        std::fs::write(home.path().join("secret"), b"s")?;
        let (address, _task) = sidecar(home.path()).await?;
        let remote = RemoteFolder::new(&address, "the-token");
        let Err(failure) = remote.download("../secret").await else {
            anyhow::bail!("a path out of the folder was served");
        };
        assert_eq!(failure.code, failure_code::INVALID_PATH, "{failure:?}");
        let Err(failure) = remote.download("absent").await else {
            anyhow::bail!("a missing file was served");
        };
        assert_eq!(failure.code, failure_code::NOT_FOUND, "{failure:?}");
        Ok(())
    }

    #[tokio::test]
    async fn an_upload_cut_short_leaves_nothing() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let (address, _task) = sidecar(home.path()).await?;
        let remote = RemoteFolder::new(&address, "the-token");
        let mut upload = remote.upload("half.bin", uuid::Uuid::from_u128(7)).await?;
        upload.write(b"only the start").await?;
        drop(upload);
        // The sidecar sees the connection end and discards the upload; its listing is then
        // empty of it (and of any temporary file).
        let folder = home.path().join(TRANSFER_FOLDER);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = std::fs::read_dir(&folder)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<Vec<_>, _>>()?;
            if left.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "left behind: {left:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(remote.list().await?.entries.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_garbled_request_closes_only_its_connection() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let (address, _task) = sidecar(home.path()).await?;
        // A length past what any request needs is refused before anything is read or held.
        for len in [u32::MAX, MAX_REQUEST_BYTES + 1] {
            let mut raw = TcpStream::connect(&address).await?;
            raw.write_all(&len.to_be_bytes()).await?;
            let mut answer = Vec::new();
            raw.read_to_end(&mut answer).await?;
            anyhow::ensure!(
                String::from_utf8_lossy(&answer).contains("a message of"),
                "{len}: {answer:?}"
            );
        }
        let remote = RemoteFolder::new(&address, "the-token");
        assert!(remote.list().await.is_ok(), "the sidecar still serves");
        Ok(())
    }
}
