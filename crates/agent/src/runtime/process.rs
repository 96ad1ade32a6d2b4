//! The `process` runtime: each session is an Xvnc server on its own display, plus the template's
//! program drawing on that display. No container engine needed — this is what `streamspace up`
//! runs.
//!
//! Xvnc listens on no TCP port: its VNC server is a Unix socket (mode 0600) in the session's own
//! directory (`<run_dir>/<display>/`, mode 0700), which only the agent connects to, and it asks
//! for a random password of the session's own (VNC authentication) that only the agent knows:
//! the agent's tunnel answers it for every viewer.
//!
//! All of a session's processes share one process group (Xvnc's), so stop, hibernate
//! (`SIGSTOP`) and wake (`SIGCONT`) signal the whole session at once. Sessions outlive the
//! agent: children are not killed when the agent exits, each one is reaped by a task while the
//! agent runs, and a state file per session (`<state_dir>/<session_id>.json`) lets the next agent process
//! re-adopt them. `/proc` is the source of truth for what is alive; the recorded start time of
//! every pid guards against the kernel reusing it for an unrelated process.
//!
//! A start is written so that the agent may be killed at any moment of it (module `launch`): no
//! process runs before the state file names it, and a record still marked `launching` when an
//! agent starts is ended and removed, so the redelivered start runs the session once.

mod group;
mod identity;
mod launch;
mod procfs;
mod state;
pub(crate) mod xdisplay;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use streamspace_proto::SessionState;
use streamspace_proto::api::Template;
use uuid::Uuid;

use super::{Runtime, RuntimeError, SessionInfo, VncTarget, vnc};
use group::{poll_until, signal_group, terminate};
use identity::SessionUser;
use state::{Intent, Role, SessionRecord, StateDir};

/// How many display/port pairs a start tries before giving up (each try that loses a race for
/// a display or a port moves on to another).
const LAUNCH_ATTEMPTS: u32 = 8;
const POLL: Duration = Duration::from_millis(25);

/// Settings of the process runtime.
#[derive(Debug, Clone)]
pub struct ProcessRuntimeConfig {
    /// Directory of the per-session state and log files.
    pub state_dir: PathBuf,
    /// Where each session gets its own directory (its VNC socket); default `<state_dir>/run`.
    /// With `run_as`, the sessions' user must be able to reach it (every directory above it
    /// searchable): the runtime makes it 0711 (passable, not listable) instead of 0700.
    pub run_dir: PathBuf,
    /// Where each user's home lives (`<home_root>/<user id>`, mode 0700, owned by the
    /// sessions' user) for templates with `persistent_home: user`; default
    /// `<state_dir>/homes`. With `run_as` it must be reachable by that user like `run_dir`:
    /// the runtime makes it 0711.
    pub home_root: PathBuf,
    /// The user (name or uid) sessions run as, Xvnc and program alike, when the agent runs as
    /// root; `None`: the agent's own user.
    pub run_as: Option<String>,
    /// The Xvnc program (a name looked up on `PATH`, or a path).
    pub xvnc: String,
    /// The lowest X display number to use.
    pub first_display: u32,
    pub geometry: String,
    /// How long Xvnc has to answer with its RFB banner.
    pub ready_timeout: Duration,
    /// How long processes have to exit after `SIGTERM` before they get `SIGKILL`.
    pub stop_timeout: Duration,
    /// The directory that holds the sessions' transfer folder (`Transfers/`) instead of the
    /// session user's home — for a user whose home does not exist (`nobody`); `None`: the home
    /// from the password database.
    pub transfer_home: Option<PathBuf>,
}

impl ProcessRuntimeConfig {
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            run_dir: state_dir.join("run"),
            home_root: state_dir.join("homes"),
            run_as: None,
            state_dir,
            xvnc: "Xvnc".to_owned(),
            first_display: 20,
            geometry: "1280x800".to_owned(),
            ready_timeout: Duration::from_secs(15),
            stop_timeout: Duration::from_secs(3),
            transfer_home: None,
        }
    }
}

/// Runs sessions as local processes under Xvnc.
#[derive(Debug)]
pub struct ProcessRuntime {
    config: ProcessRuntimeConfig,
    dir: StateDir,
    inner: Mutex<Inner>,
    /// Where a test makes a launch stop, leaving what a killed agent would leave.
    #[cfg(test)]
    interrupt_at: Option<launch::Step>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<Uuid, SessionRecord>,
    /// Displays held by sessions or by starts in progress.
    displays: HashSet<u32>,
}

/// Why one launch attempt failed.
enum LaunchError {
    /// Xvnc exited at once — most likely another server took the display or the port first.
    Lost(String),
    Fatal(RuntimeError),
    /// A test stopped the launch as if the agent had died at that step.
    #[cfg(test)]
    Interrupted,
}

impl ProcessRuntime {
    pub fn new(config: ProcessRuntimeConfig) -> Self {
        let dir = StateDir::new(config.state_dir.clone());
        Self {
            config,
            dir,
            inner: Mutex::new(Inner::default()),
            #[cfg(test)]
            interrupt_at: None,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, session_id: Uuid) -> Option<SessionRecord> {
        self.inner().sessions.get(&session_id).cloned()
    }

    fn reserve_display(&self) -> Result<u32, RuntimeError> {
        let mut inner = self.inner();
        let first = self.config.first_display;
        let display = (first..first.saturating_add(1000))
            .find(|n| !inner.displays.contains(n) && xdisplay::free_for_use(*n))
            .ok_or_else(|| {
                RuntimeError::StartFailed(format!("no free X display from :{first} upwards"))
            })?;
        inner.displays.insert(display);
        Ok(display)
    }

    fn release_display(&self, display: u32) {
        self.inner().displays.remove(&display);
    }

    fn save(&self, record: &SessionRecord) -> Result<(), RuntimeError> {
        self.dir
            .save(record)
            .map_err(|e| RuntimeError::io("writing the session state file", e))
    }

    /// Ends whatever is left of a session and removes every trace of it.
    async fn cleanup(&self, record: &SessionRecord) {
        terminate(record, self.config.stop_timeout).await;
        if let Some(xvnc) = record.xvnc() {
            xdisplay::remove_lock_files(record.display, xvnc.pid);
        }
        if let Some(dir) = &record.session_dir
            && let Err(e) = remove_dir(dir)
        {
            tracing::warn!(session_id = %record.session_id, error = %e, "could not remove the session's directory");
        }
        if let Err(e) = self.dir.remove(record.session_id) {
            tracing::warn!(session_id = %record.session_id, error = %e, "could not remove the session's state file");
        }
        let mut inner = self.inner();
        inner.sessions.remove(&record.session_id);
        inner.displays.remove(&record.display);
    }

    /// Sends `signal` to the session and waits until every process is (or is no longer)
    /// stopped.
    async fn signal_and_wait(
        &self,
        record: &SessionRecord,
        signal: Signal,
        stopped: bool,
    ) -> Result<(), RuntimeError> {
        signal_group(record, signal)?;
        let settled = poll_until(Duration::from_secs(5), || {
            record
                .processes
                .iter()
                .filter_map(|p| procfs::alive(p.pid, p.start_time))
                .all(|s| s.is_stopped() == stopped)
        })
        .await;
        if settled {
            Ok(())
        } else {
            Err(RuntimeError::Signal(format!(
                "session {} did not settle after {signal}",
                record.session_id
            )))
        }
    }

    /// The record of a session that is alive, or the error to report.
    fn live_record(&self, session_id: Uuid) -> Result<(SessionRecord, SessionInfo), RuntimeError> {
        let record = self
            .record(session_id)
            .ok_or(RuntimeError::UnknownSession(session_id))?;
        let info = observe(&record);
        if info.state == SessionState::Failed {
            return Err(RuntimeError::SessionFailed {
                session_id,
                message: info.message.unwrap_or_default(),
            });
        }
        Ok((record, info))
    }

    fn set_intent(&self, record: &mut SessionRecord, intent: Intent) -> Result<(), RuntimeError> {
        record.intent = intent;
        self.save(record)?;
        if let Some(held) = self.inner().sessions.get_mut(&record.session_id) {
            held.intent = intent;
        }
        Ok(())
    }

    /// Where the home of the user `user_id` lives (named from the id, never from a name).
    fn user_home_path(&self, user_id: Uuid) -> PathBuf {
        self.config.home_root.join(user_id.hyphenated().to_string())
    }

    /// The home of the user `user_id`, made on first use: private to the sessions' user.
    fn user_home(&self, user: &SessionUser, user_id: Uuid) -> Result<PathBuf, RuntimeError> {
        let root_mode = if user.switches() { 0o711 } else { 0o700 };
        crate::private_dir::ensure_mode(&self.config.home_root, root_mode)
            .map_err(|e| RuntimeError::io("creating the directory of user homes", e))?;
        let home = self.user_home_path(user_id);
        crate::private_dir::ensure(&home)
            .and_then(|()| user.own(&[&home]))
            .map_err(|e| {
                RuntimeError::io(format!("creating the user home {}", home.display()), e)
            })?;
        Ok(home)
    }

    /// Starts the session (with the home of `user_home`'s user as its `HOME`, when given).
    async fn start_session(
        &self,
        session_id: Uuid,
        template: &Template,
        user_home: Option<Uuid>,
    ) -> Result<SessionInfo, RuntimeError> {
        if let Some(record) = self.record(session_id) {
            let info = observe(&record);
            return match info.message {
                None => Ok(info),
                Some(message) => Err(RuntimeError::SessionFailed {
                    session_id,
                    message,
                }),
            };
        }
        let Some(program) = template.command.first() else {
            return Err(RuntimeError::InvalidTemplate(format!(
                "template {:?} has no command; the process runtime runs a program (templates with only an image need a docker or kubernetes agent)",
                template.name
            )));
        };
        if xdisplay::find_program(&self.config.xvnc).is_none() {
            return Err(RuntimeError::MissingProgram(format!(
                "Xvnc not found (looked for {:?}): install tigervnc-standalone-server",
                self.config.xvnc
            )));
        }
        if xdisplay::find_program(program).is_none() {
            return Err(RuntimeError::MissingProgram(format!(
                "program {program:?} of template {:?} not found on this agent's PATH",
                template.name
            )));
        }
        self.dir
            .create()
            .map_err(|e| RuntimeError::io("creating the session state directory", e))?;
        let mut user = match &self.config.run_as {
            Some(name) => SessionUser::run_as(name)?,
            None => SessionUser::agent(),
        };
        if let Some(user_id) = user_home {
            let home = self.user_home(&user, user_id)?;
            user = user.with_home(home);
        }
        let run_dir_mode = if user.switches() { 0o711 } else { 0o700 };
        crate::private_dir::ensure_mode(&self.config.run_dir, run_dir_mode)
            .map_err(|e| RuntimeError::io("creating the sessions' run directory", e))?;
        if user.switches() {
            xdisplay::ensure_socket_dir()
                .map_err(|e| RuntimeError::io("creating the X socket directory", e))?;
        }
        let mut last = String::new();
        for _ in 0..LAUNCH_ATTEMPTS {
            let n = self.reserve_display()?;
            match self.launch(session_id, n, template, &user).await {
                Ok(info) => {
                    tracing::info!(%session_id, x_display = n, address = %info.vnc_address, "session started");
                    return Ok(info);
                }
                Err(LaunchError::Lost(log)) => {
                    tracing::debug!(%session_id, x_display = n, %log, "Xvnc exited at once; trying another display");
                    self.release_display(n);
                    last = log;
                }
                Err(LaunchError::Fatal(e)) => {
                    self.release_display(n);
                    return Err(e);
                }
                #[cfg(test)]
                Err(LaunchError::Interrupted) => {
                    return Err(RuntimeError::StartFailed("interrupted by the test".into()));
                }
            }
        }
        Err(RuntimeError::StartFailed(format!(
            "Xvnc exited at once {LAUNCH_ATTEMPTS} times; last output: {last}"
        )))
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn platform(&self) -> &'static str {
        "process"
    }

    fn user_homes(&self) -> bool {
        true
    }

    async fn start(
        &self,
        session_id: Uuid,
        template: &Template,
    ) -> Result<SessionInfo, RuntimeError> {
        if template.persistent_home.is_user() {
            return Err(super::no_user_homes(self.platform(), template));
        }
        self.start_session(session_id, template, None).await
    }

    async fn start_with_user_home(
        &self,
        session_id: Uuid,
        template: &Template,
        user_id: Uuid,
    ) -> Result<SessionInfo, RuntimeError> {
        self.start_session(session_id, template, Some(user_id))
            .await
    }

    async fn delete_user_home(&self, user_id: Uuid) -> Result<(), RuntimeError> {
        let home = self.user_home_path(user_id);
        remove_dir(&home).map_err(|e| {
            RuntimeError::io(format!("removing the user home {}", home.display()), e)
        })?;
        tracing::info!(%user_id, path = %home.display(), "user home removed");
        Ok(())
    }

    async fn stop(&self, session_id: Uuid) -> Result<(), RuntimeError> {
        match self.record(session_id) {
            Some(record) => {
                self.cleanup(&record).await;
                tracing::info!(%session_id, "session stopped");
            }
            // Nothing held; make sure no stray file survives either.
            None => self
                .dir
                .remove(session_id)
                .map_err(|e| RuntimeError::io("removing the session state file", e))?,
        }
        Ok(())
    }

    async fn hibernate(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let (mut record, info) = self.live_record(session_id)?;
        if info.state != SessionState::Hibernated {
            self.signal_and_wait(&record, Signal::SIGSTOP, true).await?;
        }
        self.set_intent(&mut record, Intent::Hibernated)?;
        Ok(observe(&record))
    }

    async fn wake(&self, session_id: Uuid) -> Result<SessionInfo, RuntimeError> {
        let (mut record, info) = self.live_record(session_id)?;
        if info.state != SessionState::Running {
            self.signal_and_wait(&record, Signal::SIGCONT, false)
                .await?;
        }
        self.set_intent(&mut record, Intent::Running)?;
        Ok(observe(&record))
    }

    async fn status(&self, session_id: Uuid) -> Result<Option<SessionInfo>, RuntimeError> {
        Ok(self.record(session_id).map(|r| observe(&r)))
    }

    async fn vnc_target(&self, session_id: Uuid) -> Result<Option<VncTarget>, RuntimeError> {
        let Some(record) = self.record(session_id) else {
            return Ok(None);
        };
        let info = observe(&record);
        if !info.is_live() {
            return Ok(None);
        }
        // Sessions recorded before VNC moved to a Unix socket have no password.
        let password = match record.session_dir {
            Some(_) => Some(
                self.dir
                    .load_password(session_id)
                    .map_err(|e| RuntimeError::io("reading the session's VNC password", e))?,
            ),
            None => None,
        };
        Ok(Some(VncTarget {
            address: info.vnc_address,
            password,
        }))
    }

    async fn transfer_folder(
        &self,
        session_id: Uuid,
    ) -> Result<Box<dyn crate::transfer::TransferFolder>, RuntimeError> {
        let (record, info) = self.live_record(session_id)?;
        if !info.is_live() {
            return Err(RuntimeError::UnknownSession(session_id));
        }
        let user = match &self.config.run_as {
            Some(name) => SessionUser::run_as(name)?,
            None => SessionUser::agent(),
        };
        let owner = user.switches().then_some(crate::transfer::folder::Owner {
            uid: user.uid,
            gid: user.gid,
        });
        // A session that mounts its owner's user home keeps its transfer folder there, where
        // the desktop sees it; otherwise the session user's own home (or --transfer-home).
        let home = match (&record.user_home, &self.config.transfer_home) {
            (Some(home), _) => home.clone(),
            (None, Some(dir)) => dir.clone(),
            (None, None) => user.home().to_owned(),
        };
        if !home.is_dir() {
            return Err(RuntimeError::TransferUnsupported(format!(
                "the home {} of the session's user {} does not exist; give the agent --transfer-home",
                home.display(),
                user.name
            )));
        }
        Ok(Box::new(crate::transfer::LocalFolder { home, owner }))
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        let records: Vec<SessionRecord> = self.inner().sessions.values().cloned().collect();
        Ok(records.iter().map(observe).collect())
    }

    async fn recover(&self) -> Result<Vec<SessionInfo>, RuntimeError> {
        let (records, unreadable) = self
            .dir
            .load_all()
            .map_err(|e| RuntimeError::io("reading the session state directory", e))?;
        let mut report = Vec::new();
        for (session_id, message) in unreadable {
            let _ = self.dir.remove(session_id);
            report.push(lost(session_id, String::new(), message));
        }
        for record in records {
            let complete = record.intent != Intent::Launching
                && record.processes.iter().any(|p| p.role == Role::Program);
            if !complete {
                // The agent died in the middle of a start (see `launch`): end whatever of it
                // runs; the start was never reported, so its redelivery starts the session afresh.
                tracing::info!(session_id = %record.session_id, "removing a session whose start was interrupted");
                self.cleanup(&record).await;
                continue;
            }
            let info = observe(&record);
            if info.is_live() {
                tracing::info!(session_id = %record.session_id, state = %info.state, "re-adopted session");
                let mut inner = self.inner();
                inner.displays.insert(record.display);
                inner.sessions.insert(record.session_id, record);
                report.push(info);
            } else {
                let message = format!(
                    "lost while the agent was down: {}",
                    info.message.unwrap_or_default()
                );
                tracing::warn!(session_id = %record.session_id, %message, "cleaning up a dead session");
                self.cleanup(&record).await;
                report.push(lost(record.session_id, record.vnc_address(), message));
            }
        }
        Ok(report)
    }
}

/// Whether sessions can run as `user` (a name or uid): it exists, and the agent runs as root
/// (only root may switch users).
pub fn check_run_as(user: &str) -> Result<(), RuntimeError> {
    SessionUser::run_as(user)?;
    if !nix::unistd::Uid::effective().is_root() {
        return Err(RuntimeError::InvalidConfig(format!(
            "running sessions as {user:?} needs an agent running as root"
        )));
    }
    Ok(())
}

/// Removes a directory and everything in it; a missing one is fine. (Symbolic links inside are
/// removed, never followed.)
fn remove_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn lost(session_id: Uuid, vnc_address: String, message: String) -> SessionInfo {
    SessionInfo {
        session_id,
        state: SessionState::Failed,
        vnc_address,
        message: Some(message),
    }
}

/// What `/proc` says about the session now.
fn observe(record: &SessionRecord) -> SessionInfo {
    let mut all_stopped = true;
    let mut message = None;
    for p in &record.processes {
        match procfs::alive(p.pid, p.start_time) {
            Some(stat) => all_stopped &= stat.is_stopped(),
            None => {
                let what = match p.role {
                    Role::Xvnc => "the session's Xvnc server",
                    Role::Program => "the session's program",
                };
                message.get_or_insert_with(|| format!("{what} (pid {}) exited", p.pid));
            }
        }
    }
    let state = match (&message, all_stopped) {
        (Some(_), _) => SessionState::Failed,
        (None, true) => SessionState::Hibernated,
        (None, false) => SessionState::Running,
    };
    SessionInfo {
        session_id: record.session_id,
        state,
        vnc_address: record.vnc_address(),
        message,
    }
}

#[cfg(test)]
mod tests;
