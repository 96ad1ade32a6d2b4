//! The state file of one process-runtime session: `<dir>/<session_id>.json` (with the session's
//! log, `<session_id>.log`, and the agent's copy of its VNC password, `<session_id>.vncpasswd`).
//!
//! It is what lets sessions outlive the agent: a restarted agent reads these files to find the
//! processes it started before (pid *and* start time, to survive pid reuse), the display and
//! port, and whether the session was hibernated — or is a start that never finished. Files are replaced atomically (write to a
//! temporary file, then rename), so a crash never leaves half a record.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::runtime::vnc::auth::VncPassword;

/// The role a process plays in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Xvnc,
    Program,
}

/// One process of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub role: Role,
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat` when the process was started.
    pub start_time: u64,
}

/// What the agent last asked of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// A start in progress: the processes recorded so far may or may not run yet. A record
    /// still in this state when an agent starts was left by one that died mid-start.
    Launching,
    Running,
    Hibernated,
}

/// Everything needed to find, signal and clean up a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: Uuid,
    pub display: u32,
    /// The session's own directory (its VNC socket and what its Xvnc reads), removed with the
    /// session. Records written before VNC moved to a Unix socket have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_dir: Option<PathBuf>,
    /// The loopback TCP port of a session recorded before VNC moved to a Unix socket (an agent
    /// upgraded while such sessions run still re-adopts and serves them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The process group of all the session's processes (Xvnc's pid).
    pub pgid: i32,
    pub processes: Vec<ProcessRecord>,
    pub intent: Intent,
    /// The owner's user home the session mounts as its `HOME` (`persistent_home: user`), where
    /// its transfer folder lives too. Records written before user homes have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_home: Option<PathBuf>,
}

impl SessionRecord {
    /// `unix:<session dir>/vnc.sock`, or `127.0.0.1:<port>` for a session recorded before VNC
    /// moved to a Unix socket.
    pub fn vnc_address(&self) -> String {
        use crate::runtime::vnc;
        match (&self.session_dir, self.port) {
            (Some(dir), _) => vnc::unix_address(&socket_path(dir)),
            (None, Some(port)) => vnc::address(vnc::LOOPBACK, port),
            (None, None) => String::new(),
        }
    }

    pub fn xvnc(&self) -> Option<&ProcessRecord> {
        self.processes.iter().find(|p| p.role == Role::Xvnc)
    }
}

/// The VNC socket in a session's directory.
pub fn socket_path(session_dir: &Path) -> PathBuf {
    session_dir.join("vnc.sock")
}

/// The copy of the VNC password the session's Xvnc reads, in its directory.
pub fn xvnc_password_path(session_dir: &Path) -> PathBuf {
    session_dir.join("vncpasswd")
}

/// The X authorization file of the session's display, in its directory.
pub fn xauthority_path(session_dir: &Path) -> PathBuf {
    session_dir.join("Xauthority")
}

/// Writes a new file only its owner can read (mode 0600), replacing any earlier one (which is
/// removed first, so neither its mode nor a link in its place carries over).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// What [`StateDir::load_all`] found: readable records, and unreadable files by session id
/// with the reason.
pub type Loaded = (Vec<SessionRecord>, Vec<(Uuid, String)>);

/// The directory of state files.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory, private to the agent's user (0700, tightened if it is looser).
    pub fn create(&self) -> std::io::Result<()> {
        crate::private_dir::ensure(&self.dir)
    }

    fn file(&self, session_id: Uuid) -> PathBuf {
        self.dir.join(format!("{session_id}.json"))
    }

    /// Where the session's processes write their output.
    pub fn log_file(&self, session_id: Uuid) -> PathBuf {
        self.dir.join(format!("{session_id}.log"))
    }

    /// The agent's copy of the session's VNC password (`vncpasswd` format, mode 0600).
    fn password_file(&self, session_id: Uuid) -> PathBuf {
        self.dir.join(format!("{session_id}.vncpasswd"))
    }

    pub fn save_password(&self, session_id: Uuid, password: &VncPassword) -> std::io::Result<()> {
        write_private(&self.password_file(session_id), &password.to_vncpasswd())
    }

    pub fn load_password(&self, session_id: Uuid) -> std::io::Result<VncPassword> {
        let bytes = std::fs::read(self.password_file(session_id))?;
        VncPassword::from_vncpasswd(&bytes).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the session's VNC password file holds no password",
            )
        })
    }

    pub fn save(&self, record: &SessionRecord) -> std::io::Result<()> {
        let path = self.file(record.session_id);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    }

    /// Deletes the state and log files; missing files are fine.
    pub fn remove(&self, session_id: Uuid) -> std::io::Result<()> {
        for path in [
            self.file(session_id),
            self.log_file(session_id),
            self.password_file(session_id),
        ] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Every state file: the records that parse, and the session ids of those that do not.
    pub fn load_all(&self) -> std::io::Result<Loaded> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((good, bad)),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| Uuid::parse_str(s).ok())
            else {
                continue;
            };
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<SessionRecord>(&bytes).map_err(|e| e.to_string())
                });
            match parsed {
                Ok(record) if record.session_id == id => good.push(record),
                Ok(_) => bad.push((id, "state file names another session".to_owned())),
                Err(e) => bad.push((id, format!("unreadable state file: {e}"))),
            }
        }
        Ok((good, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        SessionRecord {
            session_id: Uuid::now_v7(),
            display: 21,
            session_dir: Some(PathBuf::from("/run/s/21")),
            port: None,
            pgid: 100,
            processes: vec![ProcessRecord {
                role: Role::Xvnc,
                pid: 100,
                start_time: 5,
            }],
            intent: Intent::Running,
            user_home: None,
        }
    }

    #[test]
    fn saves_loads_and_removes() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = StateDir::new(tmp.path().join("sessions"));
        dir.create()?;
        let rec = record();
        dir.save(&rec)?;
        std::fs::write(
            dir.path().join(format!("{}.json", Uuid::now_v7())),
            "{trunc",
        )?;
        std::fs::write(dir.path().join("notes.txt"), "ignored")?;
        let (good, bad) = dir.load_all()?;
        assert_eq!(good, vec![rec.clone()]);
        assert_eq!(bad.len(), 1, "the corrupt file is reported: {bad:?}");
        dir.remove(rec.session_id)?;
        dir.remove(rec.session_id)?;
        assert!(dir.load_all()?.0.is_empty());
        Ok(())
    }

    #[test]
    fn records_from_before_unix_sockets_keep_their_tcp_address() -> anyhow::Result<()> {
        let id = Uuid::now_v7();
        let old = serde_json::json!({
            "session_id": id, "display": 21, "port": 5921, "pgid": 100,
            "processes": [], "intent": "running",
        });
        let record: SessionRecord = serde_json::from_value(old)?;
        assert_eq!(record.vnc_address(), "127.0.0.1:5921");
        assert_eq!(
            self::record().vnc_address(),
            "unix:/run/s/21/vnc.sock",
            "new records name their socket"
        );
        Ok(())
    }
}
