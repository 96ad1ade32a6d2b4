//! What `streamspace up` needs from the machine it runs on, and the desktop template it offers
//! when the machine has a window manager. `up` installs nothing: it says what is missing, with
//! the Debian package that provides it, before it prints where to sign in.

use std::ffi::OsStr;
use std::path::PathBuf;

use serde_json::json;
use streamspace_proto::api::CreateTemplate;
use streamspace_store::{AuditEntry, Store, StoreError};

/// The name of the template `up` seeds for a window manager.
pub const DESKTOP_TEMPLATE: &str = "desktop";

/// The setting that records that `up` has offered the desktop template once, so that an admin
/// who deletes it does not see it come back.
const DESKTOP_OFFERED: &str = "up.desktop_template_offered";

/// A program the local agent's sessions need, and where it comes from.
struct Requirement {
    program: &'static str,
    package: &'static str,
    why: &'static str,
}

/// What every session of the process runtime needs, and what the `xterm` template runs.
const REQUIRED: [Requirement; 2] = [
    Requirement {
        program: "Xvnc",
        package: "tigervnc-standalone-server",
        why: "every session's display",
    },
    Requirement {
        program: "xterm",
        package: "xterm",
        why: "the xterm template",
    },
];

/// A window manager the desktop template can run, best first.
pub struct Desktop {
    /// Looked up on `PATH`.
    pub program: &'static str,
    pub command: &'static [&'static str],
    pub name: &'static str,
}

/// The window managers `up` knows, best first; IceWM is the one the tests install.
pub const DESKTOPS: [Desktop; 3] = [
    Desktop {
        program: "startxfce4",
        command: &["startxfce4"],
        name: "Xfce",
    },
    Desktop {
        program: "icewm-session",
        command: &["icewm-session"],
        name: "IceWM",
    },
    Desktop {
        program: "openbox-session",
        command: &["openbox-session"],
        name: "Openbox",
    },
];

/// The Debian package `up` suggests for a desktop.
pub const SUGGESTED_DESKTOP_PACKAGE: &str = "icewm";

/// `program` found in the directories of `path` (a `PATH` value), as an executable file.
fn find_program(path: Option<&OsStr>, program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What the machine lacks for `up`'s sessions, one line each naming the package.
pub fn missing(path: Option<&OsStr>) -> Vec<String> {
    REQUIRED
        .iter()
        .filter(|r| find_program(path, r.program).is_none())
        .map(|r| {
            format!(
                "{} is not installed (needed for {}): apt-get install {}",
                r.program, r.why, r.package
            )
        })
        .collect()
}

/// The best window manager on `path`, if any.
pub fn desktop(path: Option<&OsStr>) -> Option<&'static Desktop> {
    DESKTOPS
        .iter()
        .find(|d| find_program(path, d.program).is_some())
}

/// What happened to the desktop template at this start.
#[derive(Debug, PartialEq, Eq)]
pub enum DesktopTemplate {
    /// Created now, running this window manager.
    Seeded(&'static str),
    /// Offered before (it exists, or an admin deleted it): left alone.
    AlreadyOffered,
    /// No window manager on this machine.
    NoWindowManager,
}

/// Seeds the `desktop` template once, the first time `up` finds a window manager.
pub async fn seed_desktop_template(
    store: &dyn Store,
    path: Option<&OsStr>,
) -> Result<DesktopTemplate, StoreError> {
    let Some(desktop) = desktop(path) else {
        return Ok(DesktopTemplate::NoWindowManager);
    };
    let nonce = uuid::Uuid::now_v7().to_string();
    if store.setting_get_or_init(DESKTOP_OFFERED, &nonce).await? != nonce {
        return Ok(DesktopTemplate::AlreadyOffered);
    }
    let template = CreateTemplate {
        name: DESKTOP_TEMPLATE.to_owned(),
        description: format!("A desktop ({})", desktop.name),
        command: desktop.command.iter().map(|s| (*s).to_owned()).collect(),
        ..CreateTemplate::default()
    };
    let entry = AuditEntry::system(
        "template.create",
        template.name.clone(),
        json!({ "command": template.command, "allowed_groups": template.allowed_groups }),
    );
    match store.create_template(&template, &entry).await {
        Ok(_) => Ok(DesktopTemplate::Seeded(desktop.name)),
        // An admin made a template of that name already: theirs stays.
        Err(StoreError::Conflict(_)) => Ok(DesktopTemplate::AlreadyOffered),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin_dir(programs: &[&str]) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        for p in programs {
            let file = dir.path().join(p);
            std::fs::write(&file, "#!/bin/sh\n").expect("writing a stand-in program");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .expect("making it executable");
        }
        dir
    }

    fn path_of(dir: &std::path::Path) -> std::ffi::OsString {
        dir.as_os_str().to_owned()
    }

    #[test]
    fn missing_programs_are_named_with_their_package() {
        let empty = bin_dir(&[]);
        let lines = missing(Some(&path_of(empty.path())));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("apt-get install tigervnc-standalone-server"));
        assert!(lines[1].contains("apt-get install xterm"));
        let full = bin_dir(&["Xvnc", "xterm"]);
        assert!(missing(Some(&path_of(full.path()))).is_empty());
        // Not executable: not there.
        let dir = bin_dir(&[]);
        std::fs::write(dir.path().join("Xvnc"), "").expect("writing");
        assert_eq!(missing(Some(&path_of(dir.path()))).len(), 2);
    }

    #[test]
    fn the_best_window_manager_wins() {
        let none = bin_dir(&["xterm"]);
        assert!(desktop(Some(&path_of(none.path()))).is_none());
        let two = bin_dir(&["openbox-session", "icewm-session"]);
        assert_eq!(
            desktop(Some(&path_of(two.path()))).map(|d| d.name),
            Some("IceWM")
        );
    }

    #[tokio::test]
    async fn the_desktop_template_is_offered_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("up.db").display());
        streamspace_store::migrate::up(&url)
            .await
            .expect("migrating");
        let store = streamspace_store::open(&url).await.expect("a store");
        let none = bin_dir(&[]);
        let wm = bin_dir(&["icewm-session"]);
        let (none, wm) = (path_of(none.path()), path_of(wm.path()));
        assert_eq!(
            seed_desktop_template(store.as_ref(), Some(&none))
                .await
                .expect("seeding"),
            DesktopTemplate::NoWindowManager
        );
        assert_eq!(
            seed_desktop_template(store.as_ref(), Some(&wm))
                .await
                .expect("seeding"),
            DesktopTemplate::Seeded("IceWM")
        );
        let t = store
            .get_template(DESKTOP_TEMPLATE)
            .await
            .expect("the template");
        assert_eq!(t.command, ["icewm-session"]);
        // Deleted by an admin: not seeded again.
        store
            .delete_template(
                DESKTOP_TEMPLATE,
                &AuditEntry::system("template.delete", "desktop", json!({})),
            )
            .await
            .expect("deleting");
        assert_eq!(
            seed_desktop_template(store.as_ref(), Some(&wm))
                .await
                .expect("seeding"),
            DesktopTemplate::AlreadyOffered
        );
    }
}
