//! Directories only their owner may enter (mode 0700): the agent's state directory, the data
//! directory of `streamspace up`, and each session's own directory.
//!
//! A directory that already exists with a looser mode is tightened, and the log says so: an
//! operator who made it group- or world-readable on purpose learns why it changed. One that is
//! not ours to change (a volume a container platform mounted, owned by root) is used as it is,
//! with a warning.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// The mode of a private directory.
pub const MODE: u32 = 0o700;

/// Creates `path` (and missing parents) with mode 0700, or tightens it to 0700 if it exists
/// with more permissions.
pub fn ensure(path: &Path) -> io::Result<()> {
    ensure_mode(path, MODE)
}

/// [`ensure`] with another mode (0711 for a directory that other users may pass through but
/// not list).
pub fn ensure_mode(path: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(path)?;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            path.display()
        )));
    }
    let old = meta.permissions().mode() & 0o7777;
    if old & !mode != 0 {
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            if e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            // Not ours to change (a volume a container platform mounted for us, say): usable,
            // but say that it is open.
            tracing::warn!(
                path = %path.display(),
                mode = format!("{old:04o}"),
                "a directory that should be private is open to others and not ours to tighten"
            );
            return Ok(());
        }
        tracing::warn!(
            path = %path.display(),
            old_mode = format!("{old:04o}"),
            new_mode = format!("{mode:04o}"),
            "tightened the permissions of a directory that was open to others"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> io::Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
    }

    #[test]
    fn creates_private_directories_and_tightens_open_ones() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let fresh = tmp.path().join("a/b");
        ensure(&fresh)?;
        assert_eq!(mode(&fresh)?, 0o700);
        assert_eq!(mode(&tmp.path().join("a"))?, 0o700, "parents too");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open)?;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755))?;
        ensure(&open)?;
        assert_eq!(mode(&open)?, 0o700);

        let file = tmp.path().join("file");
        std::fs::write(&file, "x")?;
        assert!(ensure(&file).is_err(), "a file is not a directory");
        Ok(())
    }
}
