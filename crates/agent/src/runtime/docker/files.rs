//! The transfer folder of a session container, through the Engine API's archive endpoints:
//! `HEAD …/archive` to stat a path, `GET` to read a file (or the folder, for a listing) as a
//! tar stream, `PUT` to unpack a tar of the uploaded file into it.
//!
//! The engine resolves the paths it is given inside the container's root, following links on
//! the way, and the agent talks to it with the engine's (root) rights. So a path is never handed
//! to the engine unchecked: every component below the session's home is stat'ed first (a stat
//! reports a link as a link, not its target) and must be a real directory — and the file itself
//! a regular file, in the archive that comes back too. A link `Transfers/x -> /etc` therefore
//! ends a transfer with `invalid_path`, as on the process runtime. What a stat cannot rule out
//! is a directory swapped for a link between the checks and the request; the components are
//! checked again once the engine has answered, which narrows that window to the request itself,
//! inside the container's own root.
//!
//! An upload is first received into an unnamed temporary file of the agent (`TMPDIR`) —
//! the tar header must state the size, and an upload refused half-way (over the limit, or
//! abandoned) must leave nothing in the container — and sent to the engine only once complete.

use std::io::SeekFrom;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use streamspace_proto::transfer::{
    FileEntry, FileKind, FileListing, MAX_LISTING_ENTRIES, TRANSFER_FOLDER, TransferFailure,
    check_path, failure_code,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::{ReaderStream, StreamReader};

use super::archive::{self, EntryKind};
use crate::transfer::{Download, TransferFolder, Upload, failed};

/// Go's `os.FileMode` type bits, as the engine reports them in a stat.
const MODE_DIR: u32 = 1 << 31;
const MODE_TYPE: u32 = MODE_DIR
    | 1 << 27 // symlink
    | 1 << 26 // device
    | 1 << 25 // named pipe
    | 1 << 24 // socket
    | 1 << 21 // character device
    | 1 << 19; // irregular
/// Bytes of the folder's archive a listing reads at most before it says it is truncated.
const LISTING_BUDGET: u64 = 256 * 1024 * 1024;
const FOLDER_MODE: u32 = 0o700;
const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;

/// What a stat found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Missing,
    Directory,
    File,
    /// A link (never followed) or a special file.
    Other,
}

/// The transfer folder `<home>/Transfers` of one container.
pub struct ContainerFolder {
    docker: Docker,
    container: String,
    /// The session's home inside the container (an absolute path; trusted: it comes from the
    /// container's configuration).
    home: String,
}

impl ContainerFolder {
    pub fn new(docker: Docker, container: String, home: String) -> Self {
        Self {
            docker,
            container,
            home: home.trim_end_matches('/').to_owned(),
        }
    }

    /// `<home>/Transfers` followed by `parts`.
    fn path(&self, parts: &[&str]) -> String {
        let mut path = format!("{}/{TRANSFER_FOLDER}", self.home);
        for part in parts {
            path.push('/');
            path.push_str(part);
        }
        path
    }

    async fn stat(&self, path: &str) -> Result<(Found, u64), TransferFailure> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        match self
            .docker
            .get_container_archive_info(&self.container, Some(options))
            .await
        {
            Ok(stat) => {
                // Only the mode tells a link: Podman fills `linkTarget` for every path.
                let found = match stat.file_mode & MODE_TYPE {
                    0 => Found::File,
                    MODE_DIR => Found::Directory,
                    _ => Found::Other,
                };
                Ok((found, u64::try_from(stat.size).unwrap_or(0)))
            }
            Err(e) if super::is_not_found(&e) => Ok((Found::Missing, 0)),
            Err(e) => Err(engine_failure("reading the session's files", e)),
        }
    }

    /// Checks that the folder and the first `depth` components of `parts` are real directories
    /// (not links), stopping at the first one missing. How many exist.
    async fn walk(
        &self,
        path: &str,
        parts: &[&str],
        depth: usize,
    ) -> Result<usize, TransferFailure> {
        for i in 0..=depth {
            match self.stat(&self.path(&parts[..i])).await?.0 {
                Found::Directory => {}
                Found::Missing => return Ok(i),
                Found::File | Found::Other => {
                    return Err(TransferFailure::new(
                        failure_code::INVALID_PATH,
                        format!(
                            "{path}: the path goes through a symbolic link or a file, which \
                             transfers never follow"
                        ),
                    ));
                }
            }
        }
        Ok(depth + 1)
    }

    fn archive(
        &self,
        path: String,
    ) -> StreamReader<impl futures_util::Stream<Item = std::io::Result<Bytes>> + use<>, Bytes> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(&path)
            .build();
        let stream = self
            .docker
            .download_from_container(&self.container, Some(options))
            .map_err(std::io::Error::other);
        StreamReader::new(stream)
    }
}

fn engine_failure(what: &str, e: DockerError) -> TransferFailure {
    failed(format!("{what}: {e}"))
}

fn invalid(path: &str, message: impl std::fmt::Display) -> TransferFailure {
    TransferFailure::new(failure_code::INVALID_PATH, format!("{path:?}: {message}"))
}

fn unreadable(e: std::io::Error) -> TransferFailure {
    failed(format!("reading the container's archive: {e}"))
}

#[async_trait]
impl TransferFolder for ContainerFolder {
    async fn list(&self) -> Result<FileListing, TransferFailure> {
        let mut listing = FileListing {
            folder: TRANSFER_FOLDER.to_owned(),
            entries: Vec::new(),
            truncated: false,
        };
        // Not made until the first upload: an empty folder.
        if self.walk(TRANSFER_FOLDER, &[], 0).await? == 0 {
            return Ok(listing);
        }
        let mut reader = self.archive(self.path(&[])).take(LISTING_BUDGET);
        loop {
            let entry = match archive::next(&mut reader).await {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                // The budget ran out inside a header.
                Err(_) if reader.limit() == 0 => {
                    listing.truncated = true;
                    break;
                }
                Err(e) => return Err(unreadable(e)),
            };
            let data = entry.size + archive::padding(entry.size);
            if data > reader.limit() {
                listing.truncated = true;
                break;
            }
            archive::skip(&mut reader, data).await.map_err(unreadable)?;
            // `Transfers/<name>`: the folder's own entries, not what is below them.
            let Some(name) = entry
                .name
                .split_once('/')
                .map(|(_, rest)| rest)
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            else {
                continue;
            };
            let kind = match entry.kind {
                EntryKind::File => FileKind::File,
                EntryKind::Directory => FileKind::Directory,
                EntryKind::Symlink | EntryKind::Other => continue,
            };
            if listing.entries.len() == MAX_LISTING_ENTRIES {
                listing.truncated = true;
                break;
            }
            listing.entries.push(FileEntry {
                name: name.to_owned(),
                kind,
                size: match kind {
                    FileKind::File => entry.size,
                    FileKind::Directory => 0,
                },
                modified: chrono::DateTime::from_timestamp(entry.mtime, 0),
            });
        }
        listing.entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    async fn download(&self, path: &str) -> Result<Download, TransferFailure> {
        let parts = check_path(path).map_err(|e| invalid(path, e))?;
        let depth = parts.len() - 1;
        let not_found =
            || TransferFailure::new(failure_code::NOT_FOUND, format!("{path}: no such file"));
        if self.walk(path, &parts, depth).await? <= depth {
            return Err(not_found());
        }
        match self.stat(&self.path(&parts)).await?.0 {
            Found::File => {}
            Found::Missing => return Err(not_found()),
            Found::Directory => return Err(invalid(path, "is a directory")),
            Found::Other => return Err(invalid(path, "is not a regular file")),
        }
        let mut reader = self.archive(self.path(&parts));
        let entry = archive::next(&mut reader)
            .await
            .map_err(unreadable)?
            .ok_or_else(not_found)?;
        let name = parts[depth];
        if entry.kind != EntryKind::File || entry.name != name {
            return Err(invalid(path, "is not a regular file"));
        }
        // Checked again now that the engine has resolved the path.
        if self.walk(path, &parts, depth).await? <= depth {
            return Err(not_found());
        }
        Ok(Download {
            size: entry.size,
            body: Box::pin(reader.take(entry.size)),
        })
    }

    async fn upload(
        &self,
        path: &str,
        transfer: uuid::Uuid,
    ) -> Result<Box<dyn Upload>, TransferFailure> {
        let parts: Vec<String> = check_path(path)
            .map_err(|e| invalid(path, e))?
            .into_iter()
            .map(str::to_owned)
            .collect();
        let borrowed: Vec<&str> = parts.iter().map(String::as_str).collect();
        let depth = parts.len() - 1;
        let existing = self.walk(path, &borrowed, depth).await?;
        if existing > depth {
            match self.stat(&self.path(&borrowed)).await?.0 {
                Found::File | Found::Missing => {}
                Found::Directory | Found::Other => {
                    return Err(invalid(path, "exists and is not a regular file"));
                }
            }
        }
        let spool = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(|e| failed(format!("staging the upload: {e}")))?
            .map_err(|e| failed(format!("staging the upload: {e}")))?;
        tracing::debug!(%transfer, container = %self.container, "staging an upload");
        Ok(Box::new(ContainerUpload {
            docker: self.docker.clone(),
            container: self.container.clone(),
            home: self.home.clone(),
            path: path.to_owned(),
            parts,
            existing,
            spool: tokio::fs::File::from_std(spool),
            size: 0,
        }))
    }
}

/// An upload staged in a temporary file of the agent until it is complete.
struct ContainerUpload {
    docker: Docker,
    container: String,
    home: String,
    path: String,
    parts: Vec<String>,
    /// How many of `Transfers` and the file's directories existed (see `ContainerFolder::walk`).
    existing: usize,
    spool: tokio::fs::File,
    size: u64,
}

#[async_trait]
impl Upload for ContainerUpload {
    async fn write(&mut self, data: &[u8]) -> Result<(), TransferFailure> {
        self.spool
            .write_all(data)
            .await
            .map_err(|e| failed(format!("staging the upload: {e}")))?;
        self.size += data.len() as u64;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), TransferFailure> {
        let Self {
            docker,
            container,
            home,
            path,
            parts,
            existing,
            mut spool,
            size,
        } = *self;
        let folder = ContainerFolder::new(docker, container, home);
        let borrowed: Vec<&str> = parts.iter().map(String::as_str).collect();
        let depth = parts.len() - 1;
        // Checked again: what existed must still be real directories (and the file not turned
        // into a directory or a link) right before the engine unpacks.
        if folder.walk(&path, &borrowed, depth).await? != existing {
            return Err(failed(format!(
                "{path}: the folder changed during the upload; try again"
            )));
        }
        if existing > depth
            && !matches!(
                folder.stat(&folder.path(&borrowed)).await?.0,
                Found::File | Found::Missing
            )
        {
            return Err(invalid(&path, "exists and is not a regular file"));
        }
        spool
            .flush()
            .await
            .map_err(|e| failed(format!("staging the upload: {e}")))?;
        spool
            .seek(SeekFrom::Start(0))
            .await
            .map_err(|e| failed(format!("staging the upload: {e}")))?;
        // Unpacked into the deepest directory that exists: the archive holds the missing
        // directories below it and the file.
        let (target, created) = if existing == 0 {
            (folder.home.clone(), {
                let mut names = vec![TRANSFER_FOLDER.to_owned()];
                names.extend(parts.iter().cloned());
                names
            })
        } else {
            (
                folder.path(&borrowed[..existing - 1]),
                parts[existing - 1..].to_vec(),
            )
        };
        let now = chrono::Utc::now().timestamp();
        let mut head = Vec::new();
        for i in 1..created.len() {
            let mode = if existing == 0 && i == 1 {
                FOLDER_MODE
            } else {
                DIR_MODE
            };
            head.extend(archive::header(
                &created[..i].join("/"),
                EntryKind::Directory,
                0,
                mode,
                now,
            ));
        }
        head.extend(archive::header(
            &created.join("/"),
            EntryKind::File,
            size,
            FILE_MODE,
            now,
        ));
        let mut tail = vec![0; usize::try_from(archive::padding(size)).unwrap_or(0)];
        tail.extend(archive::end());
        let body = futures_util::stream::iter([Ok(Bytes::from(head))])
            .chain(ReaderStream::new(spool.take(size)))
            .chain(futures_util::stream::iter([Ok(Bytes::from(tail))]));
        let options = UploadToContainerOptionsBuilder::new()
            .path(&target)
            .copy_uidgid("true")
            .no_overwrite_dir_non_dir("true")
            .build();
        folder
            .docker
            .upload_to_container(
                &folder.container,
                Some(options),
                bollard::body_try_stream(body),
            )
            .await
            .map_err(|e| engine_failure("writing the file into the session", e))
    }
}
