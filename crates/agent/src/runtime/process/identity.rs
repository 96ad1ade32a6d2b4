//! Who a session's processes run as, and the environment they start with.
//!
//! A session never inherits the agent's environment (which holds the agent key and whatever
//! else the agent was started with). Its processes get only:
//! - `HOME`, `USER`, `LOGNAME`, `SHELL`: of the user the session runs as, from the password
//!   database (the agent's own user, or `--run-as`); `SHELL` is `/bin/sh` when the user's shell
//!   is not one of `/etc/shells` (a service user's `nologin` would end a terminal at once);
//! - `PATH` and `LANG`: the agent's values, else `/usr/local/bin:/usr/bin:/bin` and `C.UTF-8`;
//! - `DISPLAY` and `XAUTHORITY`: the session's X display and the cookie that opens it (the
//!   program only);
//! - the template's `env` (the program only), which may override all of the above but
//!   `DISPLAY` and `XAUTHORITY`.
//!
//! Their working directory is the user's home if it exists, else `/`.

use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use tokio::process::Command;

use crate::runtime::RuntimeError;

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
const DEFAULT_LANG: &str = "C.UTF-8";

/// The user a session runs as.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    home: PathBuf,
    shell: PathBuf,
    /// Whether the session's processes switch to this user (`--run-as`), rather than run as
    /// the agent's own.
    switch: bool,
    /// Whether `home` is the session owner's user home (`persistent_home: user`).
    user_home: bool,
}

impl SessionUser {
    /// The agent's own user.
    pub fn agent() -> Self {
        let uid = Uid::current();
        match User::from_uid(uid) {
            Ok(Some(user)) => Self::from_entry(user, false),
            // No entry (a container started with an arbitrary uid): the ids, and a home that
            // certainly exists.
            _ => Self {
                name: uid.to_string(),
                uid,
                gid: Gid::current(),
                home: PathBuf::from("/"),
                shell: PathBuf::from("/bin/sh"),
                switch: false,
                user_home: false,
            },
        }
    }

    /// The user named `name` (or a numeric uid), whom the sessions switch to.
    pub fn run_as(name: &str) -> Result<Self, RuntimeError> {
        let found = match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(name),
        };
        match found {
            Ok(Some(user)) => Ok(Self::from_entry(user, true)),
            Ok(None) => Err(RuntimeError::InvalidConfig(format!(
                "no user {name:?} to run sessions as"
            ))),
            Err(e) => Err(RuntimeError::InvalidConfig(format!(
                "looking up the user {name:?} to run sessions as: {e}"
            ))),
        }
    }

    fn from_entry(user: User, switch: bool) -> Self {
        Self {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            home: user.dir,
            shell: usable_shell(user.shell),
            switch,
            user_home: false,
        }
    }

    /// This user with `home` as its home directory (`HOME` and the working directory): a
    /// session that mounts its owner's home.
    pub fn with_home(self, home: PathBuf) -> Self {
        Self {
            home,
            user_home: true,
            ..self
        }
    }

    /// The owner's user home the session mounts, if it mounts one.
    pub fn user_home(&self) -> Option<&Path> {
        self.user_home.then_some(self.home.as_path())
    }

    /// The user's home directory, from the password database.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Whether the session's processes run as another user than the agent.
    pub fn switches(&self) -> bool {
        self.switch
    }

    /// Sets up `command` to run as this user, in a clean environment: the variables of the
    /// module's list but `DISPLAY` and the template's (add those to the program's command).
    pub fn prepare(&self, command: &mut Command) {
        command
            .env_clear()
            .envs(self.env())
            .current_dir(self.workdir());
        if self.switch {
            // As root, setting the uid also drops every supplementary group (the agent's
            // included); the session keeps only the user's primary group.
            command.uid(self.uid.as_raw()).gid(self.gid.as_raw());
        }
    }

    /// Hands `paths` to this user (owner and primary group), if the session switches to it.
    pub fn own(&self, paths: &[&Path]) -> std::io::Result<()> {
        if !self.switch {
            return Ok(());
        }
        for path in paths {
            nix::unistd::chown(*path, Some(self.uid), Some(self.gid))
                .map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let agent = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        vec![
            ("HOME", self.home.display().to_string()),
            ("USER", self.name.clone()),
            ("LOGNAME", self.name.clone()),
            ("SHELL", self.shell.display().to_string()),
            ("PATH", agent("PATH", DEFAULT_PATH)),
            ("LANG", agent("LANG", DEFAULT_LANG)),
        ]
    }

    fn workdir(&self) -> &Path {
        if self.home.is_dir() {
            &self.home
        } else {
            Path::new("/")
        }
    }
}

/// `shell` if it is a login shell (listed in `/etc/shells`), else `/bin/sh`.
fn usable_shell(shell: PathBuf) -> PathBuf {
    let listed = std::fs::read_to_string("/etc/shells").is_ok_and(|shells| {
        shells
            .lines()
            .map(str::trim)
            .any(|line| !line.starts_with('#') && Path::new(line) == shell)
    });
    if listed {
        shell
    } else {
        PathBuf::from("/bin/sh")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_user_and_named_users_are_found() {
        let me = SessionUser::agent();
        assert_eq!(me.uid, Uid::current());
        assert!(!me.switches());
        let names: Vec<&str> = me.env().iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG"]);

        let root = SessionUser::run_as("0").expect("uid 0 exists");
        assert_eq!((root.name.as_str(), root.switches()), ("root", true));
        let nobody = SessionUser::run_as("nobody").expect("nobody exists");
        assert_eq!(
            nobody.shell,
            Path::new("/bin/sh"),
            "nologin is no shell for a terminal"
        );
        let err = SessionUser::run_as("no-such-user-xyz").expect_err("unknown user");
        assert!(err.to_string().contains("no-such-user-xyz"), "{err}");
    }
}
