//! How tightly the container runtimes (docker, kubernetes) confine a session.
//!
//! A session runs whatever program its template names, for a user who may not be trusted with
//! the machine, so its container gets as little as a desktop can live with: every Linux
//! capability dropped except the few a desktop image's start-up needs
//! ([`DESKTOP_CAPABILITIES`], docker only — Kubernetes sessions run as non-root and keep none),
//! no privilege gained through set-user-id programs (`no-new-privileges` /
//! `allowPrivilegeEscalation: false`), a bounded number of processes, the template's memory
//! and CPU limits, and optionally a read-only root file system with fresh scratch directories
//! ([`SCRATCH_DIRS`]). The process runtime confines sessions differently (see its module).

/// Capabilities a docker session keeps; all others are dropped. Desktop images commonly start
/// as root to prepare the home directory and then switch to an unprivileged desktop user,
/// which needs exactly these: changing file ownership (`CHOWN`), reading and writing the home
/// whatever its owner (`DAC_OVERRIDE`, `FOWNER`), switching user and group (`SETUID`,
/// `SETGID`) and signalling the desktop user's processes (`KILL`). Not kept, among Docker's
/// defaults: `NET_RAW` (raw sockets, packet spoofing), `MKNOD`, `SYS_CHROOT`, `SETFCAP`,
/// `SETPCAP`, `AUDIT_WRITE`, `FSETID`, `NET_BIND_SERVICE`.
pub const DESKTOP_CAPABILITIES: [&str; 6] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "SETUID",
    "SETGID",
    "KILL",
];

/// Directories a session gets empty and writable (memory-backed on docker, `emptyDir` on
/// Kubernetes) when its root file system is read-only; its home is a volume or, without one,
/// another such directory.
pub const SCRATCH_DIRS: [&str; 3] = ["/tmp", "/var/tmp", "/run"];

/// The default of [`Confinement::pids_limit`]: room for a desktop with a browser (browsers run
/// hundreds of threads, and threads count), not for a fork bomb.
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;

/// The default of [`Confinement::fs_group`]: the user id most desktop images give their user.
pub const DEFAULT_FS_GROUP: i64 = 1000;

/// The operator's confinement settings for container sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Most processes and threads in one session's container (docker; on Kubernetes the
    /// kubelet's `podPidsLimit` sets it per node).
    pub pids_limit: u32,
    /// Mount the image's root file system read-only, with [`SCRATCH_DIRS`] writable. Images
    /// that write elsewhere outside the home then fail, so it is the operator's choice.
    pub read_only_root: bool,
    /// Kubernetes: the pod's `fsGroup`, so that a non-root desktop user can write its home
    /// volume (`None`: the volume keeps the storage driver's ownership).
    pub fs_group: Option<i64>,
}

impl Default for Confinement {
    fn default() -> Self {
        Self {
            pids_limit: DEFAULT_PIDS_LIMIT,
            read_only_root: false,
            fs_group: Some(DEFAULT_FS_GROUP),
        }
    }
}
