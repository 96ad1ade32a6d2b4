//! Starting one session so that an agent killed at any moment of the start leaves nothing
//! running that the next agent cannot find.
//!
//! The order is the whole point. Each process is spawned gated ([`super::group::spawn_gated`]),
//! recorded in the session's state file, and only then let go; the record says `launching` until
//! the last step rewrites it as `running`. So, wherever the agent dies:
//! - before a process is recorded, its gate closes with the agent and it exits without running;
//! - after, the record names it (and the program joins Xvnc's process group), and the next
//!   agent's recovery ends the whole group of a `launching` record and removes the record, so
//!   the redelivered start builds the session afresh, once;
//! - after the final save, the session is complete and is re-adopted; the redelivered start
//!   finds it and is a no-op.

use tokio::time::Instant;
use uuid::Uuid;

use super::group::{gated, spawn_gated};
use super::identity::SessionUser;
use super::state::{self, Intent, Role, SessionRecord};
use super::{LaunchError, POLL, ProcessRuntime, observe, procfs, vnc, xdisplay};
use crate::runtime::vnc::auth::VncPassword;
use crate::runtime::{RuntimeError, SessionInfo};
use streamspace_proto::api::Template;

/// The points of a start at which an agent may die (tests stop a launch at each of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    XvncSpawned,
    XvncRecorded,
    XvncReleased,
    XvncReady,
    ProgramSpawned,
    ProgramRecorded,
    ProgramReleased,
    Committed,
}

impl ProcessRuntime {
    /// One attempt at starting the session on `display`. On failure everything the attempt
    /// started is ended and its record removed.
    pub(super) async fn launch(
        &self,
        session_id: Uuid,
        display: u32,
        template: &Template,
        user: &SessionUser,
    ) -> Result<SessionInfo, LaunchError> {
        let mut record = None;
        let result = self
            .bring_up(session_id, display, template, user, &mut record)
            .await;
        match (&result, record) {
            (Ok(_), Some(record)) => {
                self.inner().sessions.insert(session_id, record);
            }
            #[cfg(test)]
            (Err(LaunchError::Interrupted), _) => {}
            (Err(_), Some(record)) => self.cleanup(&record).await,
            (_, None) => {}
        }
        result
    }

    /// The steps of [`Self::launch`]; `slot` holds the record as soon as there is one, for the
    /// caller to clean up after a failure.
    async fn bring_up(
        &self,
        session_id: Uuid,
        display: u32,
        template: &Template,
        user: &SessionUser,
        slot: &mut Option<SessionRecord>,
    ) -> Result<SessionInfo, LaunchError> {
        let session_dir = self.config.run_dir.join(display.to_string());
        let socket = state::socket_path(&session_dir);
        // The kernel's limit on a Unix socket's path (`sun_path`, with its final NUL).
        if socket.as_os_str().len() > 107 {
            return Err(LaunchError::Fatal(RuntimeError::InvalidConfig(format!(
                "the session socket path {} is longer than a Unix socket allows; use a shorter \
                 state directory",
                socket.display()
            ))));
        }
        // What a session that died on this display left is stale: no live session of this
        // runtime holds the display. Made (and filled) before any process of the session runs,
        // so nothing in it can be a link the session planted; then handed to the session's
        // user, whose Xvnc makes its socket there.
        super::remove_dir(&session_dir)
            .and_then(|()| crate::private_dir::ensure(&session_dir))
            .map_err(|e| {
                LaunchError::Fatal(RuntimeError::io("creating the session directory", e))
            })?;
        let log_path = self.dir.log_file(session_id);
        let log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| LaunchError::Fatal(RuntimeError::io("opening the session log", e)))
        };
        // Opened before anything runs, so a failure here leaves nothing to clean up.
        let (program_out, program_err) = (log()?, log()?);
        // A password only the agent (which answers Xvnc's challenge for every viewer) and the
        // session's Xvnc know.
        let password = VncPassword::random();
        let password_file = state::xvnc_password_path(&session_dir);
        // And an X cookie only the session's program gets: without it, any local process
        // could use the display (read the screen, type into it) past VNC altogether.
        let cookie: [u8; 16] = rand::random();
        let xauthority = state::xauthority_path(&session_dir);
        self.dir
            .save_password(session_id, &password)
            .and_then(|()| state::write_private(&password_file, &password.to_vncpasswd()))
            .and_then(|()| {
                state::write_private(&xauthority, &xdisplay::xauthority(display, &cookie))
            })
            .and_then(|()| user.own(&[&password_file, &xauthority, &session_dir]))
            .map_err(|e| {
                LaunchError::Fatal(RuntimeError::io("writing the session's VNC password", e))
            })?;
        let args = [
            format!(":{display}"),
            // VNC on a Unix socket only the agent's user may open, and on no TCP port.
            "-rfbunixpath".into(),
            socket.display().to_string(),
            "-rfbunixmode".into(),
            "0600".into(),
            "-rfbport".into(),
            "-1".into(),
            // Only VNC authentication, with the session's password; no blacklisting, which on
            // a Unix socket (every client has the same empty address) would let anyone who
            // fails five times lock the agent out.
            "-SecurityTypes".into(),
            "VncAuth".into(),
            "-PasswordFile".into(),
            password_file.display().to_string(),
            "-UseBlacklist".into(),
            "0".into(),
            "-auth".into(),
            xauthority.display().to_string(),
            "-geometry".into(),
            self.config.geometry.clone(),
            "-depth".into(),
            "24".into(),
        ];
        let mut xvnc = gated(&self.config.xvnc, args);
        user.prepare(&mut xvnc);
        xvnc.stdout(log()?).stderr(log()?).process_group(0);
        let (xvnc, gate) = spawn_gated(&mut xvnc, Role::Xvnc).map_err(LaunchError::Fatal)?;
        self.reached(Step::XvncSpawned)?;
        let record = slot.insert(SessionRecord {
            session_id,
            display,
            session_dir: Some(session_dir.clone()),
            port: None,
            pgid: xvnc.pid,
            processes: vec![xvnc],
            intent: Intent::Launching,
            user_home: user.user_home().map(std::path::Path::to_path_buf),
        });
        self.save(record).map_err(LaunchError::Fatal)?;
        self.reached(Step::XvncRecorded)?;
        gate.open().await.map_err(|e| {
            LaunchError::Fatal(RuntimeError::io("letting the session's Xvnc start", e))
        })?;
        self.reached(Step::XvncReleased)?;
        self.wait_ready(record).await?;
        self.reached(Step::XvncReady)?;

        let mut program = gated(&template.command[0], template.command[1..].to_vec());
        user.prepare(&mut program);
        program
            .envs(&template.env)
            .env("DISPLAY", format!(":{display}"))
            .env("XAUTHORITY", &xauthority)
            .stdout(program_out)
            .stderr(program_err)
            .process_group(record.pgid);
        let (program, gate) =
            spawn_gated(&mut program, Role::Program).map_err(LaunchError::Fatal)?;
        self.reached(Step::ProgramSpawned)?;
        record.processes.push(program);
        self.save(record).map_err(LaunchError::Fatal)?;
        self.reached(Step::ProgramRecorded)?;
        gate.open().await.map_err(|e| {
            LaunchError::Fatal(RuntimeError::io("letting the session's program start", e))
        })?;
        self.reached(Step::ProgramReleased)?;
        record.intent = Intent::Running;
        self.save(record).map_err(LaunchError::Fatal)?;
        self.reached(Step::Committed)?;
        Ok(observe(record))
    }

    /// Waits until Xvnc answers with its RFB banner, or exits, or the deadline passes.
    async fn wait_ready(&self, record: &SessionRecord) -> Result<(), LaunchError> {
        let deadline = Instant::now() + self.config.ready_timeout;
        let log = self.dir.log_file(record.session_id);
        loop {
            let alive = || {
                record
                    .processes
                    .iter()
                    .all(|p| procfs::alive(p.pid, p.start_time).is_some())
            };
            if !alive() {
                return Err(LaunchError::Lost(xdisplay::log_tail(&log, 600)));
            }
            if vnc::banner_ok(&record.vnc_address()).await && alive() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::Fatal(RuntimeError::StartFailed(format!(
                    "Xvnc did not answer at {} within {:?}; its log ends with: {}",
                    record.vnc_address(),
                    self.config.ready_timeout,
                    xdisplay::log_tail(&log, 600)
                ))));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Where a test has asked the launch to stop as if the agent had died there.
    #[cfg(test)]
    fn reached(&self, step: Step) -> Result<(), LaunchError> {
        if self.interrupt_at == Some(step) {
            return Err(LaunchError::Interrupted);
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn reached(&self, _step: Step) -> Result<(), LaunchError> {
        Ok(())
    }
}
