//! The X side of a process session: picking a free display, cleaning its lock files, and
//! finding programs on `PATH`. (What is about VNC, not X, is in [`crate::runtime::vnc`].)
//!
//! An X server claims display `N` by creating `/tmp/.X{N}-lock` (holding its pid) and the socket
//! `/tmp/.X11-unix/X{N}`. The lock file is the arbiter between concurrent servers, so cleanup
//! only removes it when it names our own server (or a server that no longer exists): a session
//! that lost a race for a display must never delete the winner's lock.

use std::path::{Path, PathBuf};

use super::procfs;

const X_TMP: &str = "/tmp";

fn lock_file(display: u32) -> PathBuf {
    Path::new(X_TMP).join(format!(".X{display}-lock"))
}

fn socket_file(display: u32) -> PathBuf {
    Path::new(X_TMP).join(format!(".X11-unix/X{display}"))
}

/// Makes the directory of X sockets (mode 1777, like `/tmp`) if it is missing: an X server
/// running as an unprivileged user cannot make it in `/tmp` itself.
pub fn ensure_socket_dir() -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = Path::new(X_TMP).join(".X11-unix");
    match std::fs::DirBuilder::new().mode(0o1777).create(&dir) {
        Ok(()) => std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The X authorization scheme of [`xauthority`].
const MIT_MAGIC_COOKIE: &[u8] = b"MIT-MAGIC-COOKIE-1";

/// An `Xauthority` file granting `cookie` on `display` (any host: family "wild"), in the format
/// of libXau: per entry a 16-bit family, then address, display number, scheme name and data,
/// each a 16-bit length and its bytes (big-endian). Xvnc's `-auth` reads it, so only clients
/// presenting the cookie (the session's program, through `XAUTHORITY`) may use the display.
pub fn xauthority(display: u32, cookie: &[u8; 16]) -> Vec<u8> {
    const FAMILY_WILD: u16 = 0xffff;
    let number = display.to_string();
    let mut file = FAMILY_WILD.to_be_bytes().to_vec();
    for field in [&b""[..], number.as_bytes(), MIT_MAGIC_COOKIE, cookie] {
        let len = u16::try_from(field.len()).expect("fields are short");
        file.extend_from_slice(&len.to_be_bytes());
        file.extend_from_slice(field);
    }
    file
}

/// Whether a living X server holds display `n`, or may be about to. A lock naming a process
/// that no longer exists is stale: the X server started on that display removes it, as every X
/// server does, so it does not make the display taken (a machine where sessions were killed
/// would otherwise run out of displays).
pub fn display_taken(n: u32) -> bool {
    let lock = std::fs::read_to_string(lock_file(n)).map_err(|e| e.kind());
    taken(lock, socket_file(n).exists(), |pid| {
        procfs::stat(pid).is_some_and(|s| !s.is_dead())
    })
}

/// Whether display `n` can be used now: no living X server holds it, and a stale lock and
/// socket left there (by a server that was killed) are removed first — the new server may run
/// as a user who could not remove another user's files from `/tmp` itself.
pub fn free_for_use(n: u32) -> bool {
    if display_taken(n) {
        return false;
    }
    if lock_file(n).exists() || socket_file(n).exists() {
        let owner = std::fs::read_to_string(lock_file(n))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .unwrap_or(0);
        remove_lock_files(n, owner);
    }
    !lock_file(n).exists() && !socket_file(n).exists()
}

/// The decision of [`display_taken`]: `lock` is the lock file's text (or why it could not be
/// read), `socket` whether the display's socket exists, `alive` whether a pid is a living
/// process.
fn taken(
    lock: Result<String, std::io::ErrorKind>,
    socket: bool,
    alive: impl Fn(i32) -> bool,
) -> bool {
    match lock {
        // No lock: a socket alone may be a server between its socket and its lock; keep off.
        Err(std::io::ErrorKind::NotFound) => socket,
        Err(_) => true,
        Ok(text) => match text.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => alive(pid),
            // Empty or half-written: a server is writing its lock right now.
            _ => true,
        },
    }
}

/// Removes the lock file and socket of `display` if they belong to the X server `pid` or to no
/// living process. Missing files are fine.
pub fn remove_lock_files(display: u32, pid: i32) {
    let lock = lock_file(display);
    let owner = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    let ours_or_stale = match owner {
        Some(owner) => owner == pid || procfs::stat(owner).is_none_or(|s| s.is_dead()),
        // No lock: a socket left behind is stale (a live server keeps its lock).
        None => true,
    };
    if !ours_or_stale {
        let n = display;
        tracing::debug!(
            x_display = n,
            "display lock belongs to another X server; left alone"
        );
        return;
    }
    for path in [lock, socket_file(display)] {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove X lock file");
        }
    }
}

/// Finds `program` the way a shell would: as a path if it contains `/`, else on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last `max` bytes of a log file, for error messages.
pub fn log_tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xauthority_files_are_in_libxau_format() {
        let file = xauthority(21, &[7; 16]);
        let mut expected = vec![0xff, 0xff, 0, 0, 0, 2, b'2', b'1', 0, 18];
        expected.extend_from_slice(b"MIT-MAGIC-COOKIE-1");
        expected.extend_from_slice(&[0, 16]);
        expected.extend_from_slice(&[7; 16]);
        assert_eq!(file, expected);
    }

    #[test]
    fn a_lock_of_a_process_that_is_gone_leaves_the_display_free() {
        use std::io::ErrorKind::{NotFound, PermissionDenied};
        let alive = |pid: i32| pid == 4242;
        // X servers write their pid right-aligned in eleven characters.
        assert!(
            taken(Ok("      4242\n".into()), true, alive),
            "a living server"
        );
        assert!(
            !taken(Ok("      4243\n".into()), true, alive),
            "a stale lock"
        );
        assert!(
            taken(Ok(String::new()), false, alive),
            "a lock being written"
        );
        assert!(taken(Ok("junk".into()), false, alive));
        assert!(taken(Err(PermissionDenied), false, alive));
        assert!(!taken(Err(NotFound), false, alive), "nothing there");
        assert!(
            taken(Err(NotFound), true, alive),
            "a socket without a lock yet"
        );
    }

    #[test]
    fn finds_programs_on_path_and_by_path() {
        assert!(find_program("sh").is_some(), "sh is on PATH");
        assert_eq!(find_program("/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_program("surely-not-a-program-xyz"), None);
        assert_eq!(find_program("/nonexistent/sh"), None);
    }
}
