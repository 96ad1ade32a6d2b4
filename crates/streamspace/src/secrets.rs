//! Secret files (`admin-token`): written once with mode 0600, read back on later starts.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Reads a secret file, `None` if it does not exist.
pub fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads a secret that must be there (a password file named by a flag): trimmed, and refused
/// if the file is missing or empty. `what` names it in the error.
pub fn read_required(path: &Path, what: &str) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} from {}", path.display()))?;
    let secret = secret.trim();
    if secret.is_empty() {
        anyhow::bail!("the file {} holding {what} is empty", path.display());
    }
    Ok(secret.to_owned())
}

/// Writes a secret readable only by its owner (0600), replacing any earlier one.
pub fn write(path: &Path, secret: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// `$STREAMSPACE_DATA_DIR`, else [`user_data_dir`]: where `streamspace up` keeps its data and
/// client commands find the admin token it saved.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("STREAMSPACE_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    user_data_dir()
}

/// Where `streamspace login` saves the token it gets: `~/.config/streamspace/token` (or the
/// platform's equivalent), mode 0600.
pub fn login_token_path() -> anyhow::Result<PathBuf> {
    dirs::config_dir()
        .map(|d| d.join("streamspace").join("token"))
        .context("cannot tell the user's configuration directory; pass --token instead")
}

/// `~/.local/share/streamspace` (or the platform's equivalent).
pub fn user_data_dir() -> anyhow::Result<PathBuf> {
    dirs::data_dir()
        .map(|d| d.join("streamspace"))
        .context("cannot tell the user's data directory; pass --data-dir (or --state-dir)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn secrets_are_private_and_round_trip() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("admin-token");
        assert_eq!(read(&path)?, None);
        write(&path, "ssa_secret")?;
        assert_eq!(read(&path)?.as_deref(), Some("ssa_secret"));
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "admin token must be readable by its owner only"
        );
        Ok(())
    }
}
