//! The transfer folder on a local file system (the process runtime's, behind
//! [`super::LocalFolder`]): every path is walked from the folder one component at a time with
//! `openat(…, O_NOFOLLOW)`, so no symbolic link — planted before or swapped in during a
//! transfer — leads the agent, which may run as root, out of the folder.
//!
//! Blocking calls throughout: the caller runs them on the blocking pool.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use chrono::DateTime;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};
use streamspace_proto::transfer::{
    FileEntry, FileKind, FileListing, MAX_LISTING_ENTRIES, TRANSFER_FOLDER, TransferFailure,
    check_path, failure_code,
};

/// Mode of the transfer folder itself: only the session's user looks inside.
const FOLDER_MODE: u32 = 0o700;
const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;

/// Who owns what a transfer creates: the session's user when the agent runs sessions as
/// another user (`--run-as`), else nobody in particular (the agent's own user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

/// An open transfer folder.
#[derive(Debug)]
pub struct Folder {
    dir: OwnedFd,
    owner: Option<Owner>,
}

/// An upload in progress: written under a temporary name, renamed into place by
/// [`Upload::commit`], removed if dropped before that.
#[derive(Debug)]
pub struct Upload {
    dir: OwnedFd,
    temp: String,
    name: String,
    pub file: Option<File>,
    committed: bool,
}

fn failure(code: &str, message: impl Into<String>) -> TransferFailure {
    TransferFailure::new(code, message)
}

fn io_failure(what: &str, e: Errno) -> TransferFailure {
    failure(failure_code::FAILED, format!("{what}: {}", e.desc()))
}

/// What a failed `openat` of a path component means to the person who asked.
fn walk_failure(path: &str, e: Errno) -> TransferFailure {
    match e {
        Errno::ENOENT => failure(failure_code::NOT_FOUND, format!("{path}: no such file")),
        Errno::ELOOP | Errno::ENOTDIR => failure(
            failure_code::INVALID_PATH,
            format!(
                "{path}: the path goes through a symbolic link or a file, which transfers never follow"
            ),
        ),
        Errno::EISDIR => failure(failure_code::INVALID_PATH, format!("{path} is a directory")),
        other => io_failure(path, other),
    }
}

fn invalid(path: &str, e: streamspace_proto::transfer::PathError) -> TransferFailure {
    failure(failure_code::INVALID_PATH, format!("{path:?}: {e}"))
}

impl Folder {
    /// Opens `home`/`Transfers`, creating it (mode 0700, owned by `owner`) on first use.
    /// `home` itself is trusted (it comes from the agent's configuration or the password
    /// database); the folder must not be a symbolic link.
    pub fn open(home: &Path, owner: Option<Owner>) -> Result<Self, TransferFailure> {
        let dir_flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let home_fd = nix::fcntl::open(home, dir_flags, Mode::empty()).map_err(|e| {
            failure(
                failure_code::UNSUPPORTED,
                format!(
                    "the session's home {} cannot be opened: {}",
                    home.display(),
                    e.desc()
                ),
            )
        })?;
        let flags = dir_flags | OFlag::O_NOFOLLOW;
        let dir = match openat(&home_fd, TRANSFER_FOLDER, flags, Mode::empty()) {
            Ok(dir) => dir,
            Err(Errno::ENOENT) => {
                match mkdirat(
                    &home_fd,
                    TRANSFER_FOLDER,
                    Mode::from_bits_truncate(FOLDER_MODE),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_failure("creating the transfer folder", e)),
                }
                let dir = openat(&home_fd, TRANSFER_FOLDER, flags, Mode::empty())
                    .map_err(|e| walk_failure(TRANSFER_FOLDER, e))?;
                chown(&dir, owner)?;
                dir
            }
            Err(e) => return Err(walk_failure(TRANSFER_FOLDER, e)),
        };
        Ok(Self { dir, owner })
    }

    /// The directory holding `parts`' last component, walked without following links;
    /// missing directories are created when `create` is set.
    fn parent(&self, path: &str, parts: &[&str], create: bool) -> Result<OwnedFd, TransferFailure> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut dir = self
            .dir
            .try_clone()
            .map_err(|e| failure(failure_code::FAILED, e.to_string()))?;
        for part in &parts[..parts.len().saturating_sub(1)] {
            dir = match openat(&dir, *part, flags, Mode::empty()) {
                Ok(next) => next,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(&dir, *part, Mode::from_bits_truncate(DIR_MODE)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(io_failure("creating a directory", e)),
                    }
                    let next = openat(&dir, *part, flags, Mode::empty())
                        .map_err(|e| walk_failure(path, e))?;
                    chown(&next, self.owner)?;
                    next
                }
                Err(e) => return Err(walk_failure(path, e)),
            };
        }
        Ok(dir)
    }

    /// Starts an upload to `path`: a new temporary file next to where it will be.
    pub fn upload(&self, path: &str, transfer: uuid::Uuid) -> Result<Upload, TransferFailure> {
        let parts = check_path(path).map_err(|e| invalid(path, e))?;
        let dir = self.parent(path, &parts, true)?;
        let name = parts.last().copied().unwrap_or_default().to_owned();
        // An existing directory or link of that name is not replaced.
        match fstatat(&dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if kind(&stat) != Some(FileKind::File) => {
                return Err(failure(
                    failure_code::INVALID_PATH,
                    format!("{path} exists and is not a regular file"),
                ));
            }
            Ok(_) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(walk_failure(path, e)),
        }
        let temp = format!(".streamspace-upload-{}", transfer.simple());
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            &dir,
            temp.as_str(),
            flags,
            Mode::from_bits_truncate(FILE_MODE),
        )
        .map_err(|e| io_failure("creating the file", e))?;
        let upload = Upload {
            dir,
            temp,
            name,
            file: Some(File::from(fd)),
            committed: false,
        };
        if let Some(file) = &upload.file {
            chown(file, self.owner)?;
        }
        Ok(upload)
    }

    /// Opens `path` for a download: a regular file (never a link, a device or a pipe) that,
    /// when sessions run as another user, belongs to that user — so a hard link to a file of
    /// someone else is not handed out. Its size.
    pub fn download(&self, path: &str) -> Result<(File, u64), TransferFailure> {
        let parts = check_path(path).map_err(|e| invalid(path, e))?;
        let dir = self.parent(path, &parts, false)?;
        let name = parts.last().copied().unwrap_or_default();
        // Non-blocking: opening a FIFO must not wait for a writer.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(&dir, name, flags, Mode::empty()).map_err(|e| walk_failure(path, e))?;
        let stat = fstat(&fd).map_err(|e| io_failure(path, e))?;
        if kind(&stat) != Some(FileKind::File) {
            return Err(failure(
                failure_code::INVALID_PATH,
                format!("{path} is not a regular file"),
            ));
        }
        if let Some(owner) = self.owner
            && stat.st_uid != owner.uid.as_raw()
        {
            return Err(failure(
                failure_code::INVALID_PATH,
                format!("{path} does not belong to the session's user"),
            ));
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        Ok((File::from(fd), size))
    }

    /// The folder's files and directories (not links), by name.
    pub fn list(&self) -> Result<FileListing, TransferFailure> {
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let mut dir = nix::dir::Dir::openat(&self.dir, ".", flags, Mode::empty())
            .map_err(|e| io_failure("reading the transfer folder", e))?;
        let mut entries = Vec::new();
        let mut truncated = false;
        for entry in dir.iter() {
            let entry = entry.map_err(|e| io_failure("reading the transfer folder", e))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." || name.starts_with(".streamspace-upload-") {
                continue;
            }
            let Ok(stat) = fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            let Some(kind) = kind(&stat) else { continue };
            if entries.len() == MAX_LISTING_ENTRIES {
                truncated = true;
                break;
            }
            entries.push(FileEntry {
                name: name.to_owned(),
                kind,
                size: match kind {
                    FileKind::File => u64::try_from(stat.st_size).unwrap_or(0),
                    FileKind::Directory => 0,
                },
                modified: DateTime::from_timestamp(stat.st_mtime, 0),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(FileListing {
            folder: TRANSFER_FOLDER.to_owned(),
            entries,
            truncated,
        })
    }
}

impl Upload {
    /// Moves the finished file into place (replacing a file of that name).
    pub fn commit(mut self) -> Result<(), TransferFailure> {
        if let Some(file) = self.file.take() {
            file.sync_all()
                .map_err(|e| failure(failure_code::FAILED, format!("writing the file: {e}")))?;
        }
        renameat(&self.dir, self.temp.as_str(), &self.dir, self.name.as_str())
            .map_err(|e| io_failure("moving the file into place", e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.file.take());
            let _ = unlinkat(&self.dir, self.temp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

fn chown(fd: impl AsFd, owner: Option<Owner>) -> Result<(), TransferFailure> {
    match owner {
        Some(o) => fchown(fd, Some(o.uid), Some(o.gid))
            .map_err(|e| io_failure("handing the file to the session's user", e)),
        None => Ok(()),
    }
}

fn kind(stat: &FileStat) -> Option<FileKind> {
    match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Some(FileKind::File),
        SFlag::S_IFDIR => Some(FileKind::Directory),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn write(folder: &Folder, path: &str, body: &[u8]) -> Result<(), TransferFailure> {
        let mut upload = folder.upload(path, uuid::Uuid::now_v7())?;
        upload
            .file
            .as_mut()
            .map(|f| f.write_all(body))
            .transpose()
            .map_err(|e| failure(failure_code::FAILED, e.to_string()))?;
        upload.commit()
    }

    #[test]
    fn files_go_in_and_come_out_of_the_folder() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let folder = Folder::open(home.path(), None)?;
        let root = home.path().join(TRANSFER_FOLDER);
        assert_eq!(
            std::fs::metadata(&root)?.permissions().mode() & 0o777,
            FOLDER_MODE
        );
        write(&folder, "a.txt", b"hello")?;
        write(&folder, "sub/dir/b.txt", b"deep")?;
        write(&folder, "a.txt", b"replaced")?;
        assert_eq!(std::fs::read(root.join("a.txt"))?, b"replaced");
        assert_eq!(std::fs::read(root.join("sub/dir/b.txt"))?, b"deep");
        let (mut file, size) = folder.download("sub/dir/b.txt")?;
        let mut body = String::new();
        file.read_to_string(&mut body)?;
        assert_eq!((body.as_str(), size), ("deep", 4));
        let listing = folder.list()?;
        let names: Vec<_> = listing
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind))
            .collect();
        assert_eq!(
            names,
            [("a.txt", FileKind::File), ("sub", FileKind::Directory)]
        );
        assert_eq!(
            Folder::open(home.path(), None)?.list()?,
            listing,
            "opens again"
        );
        Ok(())
    }

    #[test]
    fn an_unfinished_upload_leaves_nothing() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let folder = Folder::open(home.path(), None)?;
        write(&folder, "keep.txt", b"old")?;
        let mut upload = folder.upload("keep.txt", uuid::Uuid::now_v7())?;
        upload
            .file
            .as_mut()
            .map(|f| f.write_all(b"half"))
            .transpose()?;
        drop(upload);
        let root = home.path().join(TRANSFER_FOLDER);
        let names: Vec<_> = std::fs::read_dir(&root)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, ["keep.txt"], "no temporary file is left");
        assert_eq!(std::fs::read(root.join("keep.txt"))?, b"old");
        Ok(())
    }

    #[test]
    fn links_out_of_the_folder_are_never_followed() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        std::fs::write(outside.path().join("secret"), "secret")?;
        let folder = Folder::open(home.path(), None)?;
        let root = home.path().join(TRANSFER_FOLDER);
        std::os::unix::fs::symlink(outside.path(), root.join("out"))?;
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("s"))?;
        for path in ["out/secret", "s"] {
            let err = folder.download(path).expect_err("a link is refused");
            assert_eq!(err.code, failure_code::INVALID_PATH, "{path}: {err:?}");
        }
        for path in ["out/new", "s"] {
            let err = write(&folder, path, b"x").expect_err("a link is refused");
            assert_eq!(err.code, failure_code::INVALID_PATH, "{path}: {err:?}");
        }
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret"))?,
            "secret"
        );
        assert!(!outside.path().join("new").exists());
        let err = folder.download("../x").expect_err("dots");
        assert_eq!(err.code, failure_code::INVALID_PATH);
        let err = folder.download("missing").expect_err("missing");
        assert_eq!(err.code, failure_code::NOT_FOUND);
        let names: Vec<_> = folder.list()?.entries.into_iter().map(|e| e.name).collect();
        assert!(names.is_empty(), "links are not listed: {names:?}");

        // The folder itself a link: refused too.
        let other = tempfile::tempdir()?;
        std::os::unix::fs::symlink(outside.path(), other.path().join(TRANSFER_FOLDER))?;
        let err = Folder::open(other.path(), None).expect_err("the folder is a link");
        assert_eq!(err.code, failure_code::INVALID_PATH);
        Ok(())
    }

    #[test]
    fn what_is_created_belongs_to_the_session_user() -> anyhow::Result<()> {
        // Only root hands files to others: the tests run as root, as CI does.
        let nobody = nix::unistd::User::from_name("nobody")?
            .ok_or_else(|| anyhow::anyhow!("no user nobody"))?;
        let owner = Owner {
            uid: nobody.uid,
            gid: nobody.gid,
        };
        let home = tempfile::tempdir()?;
        let folder = Folder::open(home.path(), Some(owner))?;
        write(&folder, "d/f", b"x")?;
        let root = home.path().join(TRANSFER_FOLDER);
        for path in [root.clone(), root.join("d"), root.join("d/f")] {
            assert_eq!(
                std::fs::metadata(&path)?.uid(),
                nobody.uid.as_raw(),
                "{path:?}"
            );
        }
        // A file of someone else (root's, hard-linked or not) is not handed out.
        std::fs::write(root.join("roots"), "r")?;
        let err = folder.download("roots").expect_err("not the user's");
        assert_eq!(err.code, failure_code::INVALID_PATH);
        Ok(())
    }
}
