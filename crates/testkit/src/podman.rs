//! A throwaway Podman engine per test, serving the Docker Engine API on a unix socket, and a
//! session image built locally (there is no registry here).
//!
//! Each [`Podman`] keeps its storage, run state and socket in its own temporary directory
//! (`--root`, `--runroot`, `--tmpdir`, vfs storage), so tests can run in parallel and leave
//! nothing behind. The settings that make rootful Podman work on these machines (runc with
//! cgroupfs, no default ulimits) come from a `containers.conf` in that directory, passed through
//! `CONTAINERS_CONF` to the child processes only. Starting fails loudly if Podman is missing.
//!
//! [`Podman::import_session_image`] builds an image from the host's busybox-static: `sh`, `nc`
//! and a stand-in VNC server that answers every connection on `$VNC_PORT` (5901 unless set)
//! with the `RFB 003.008` banner, which is all a readiness check looks at.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const CONTAINERS_CONF: &str = "[containers]\ndefault_ulimits = []\n\n\
     [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n";
/// The stand-in VNC server the session image runs by default.
/// `nc -ll` keeps listening and runs `/bin/rfb` (which prints the banner) per connection; the
/// shell exits on SIGTERM, so stopping a container is quick.
const STAND_IN_VNC: &str = "trap 'exit 0' TERM; nc -ll -p \"${VNC_PORT:-5901}\" -e /bin/rfb & wait";

/// One `podman system service` with its own storage, killed (with its containers) on drop.
pub struct Podman {
    dir: tempfile::TempDir,
    service: Option<Child>,
}

impl Podman {
    /// Starts the engine and waits until its API answers.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ss-podman-")
            .tempdir()
            .context("creating a directory for the test Podman")?;
        std::fs::write(dir.path().join("containers.conf"), CONTAINERS_CONF)
            .context("writing containers.conf")?;
        let mut podman = Self { dir, service: None };
        let log = std::fs::File::create(podman.log()).context("creating the Podman log")?;
        let child = podman
            .command()
            .args(["system", "service", "--time=0", &podman.docker_host()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting `podman system service` (install the podman and runc packages)")?;
        podman.service = Some(child);
        podman.wait_for_api().with_context(|| {
            format!(
                "Podman's API socket did not answer; log:\n{}",
                std::fs::read_to_string(podman.log()).unwrap_or_default()
            )
        })?;
        Ok(podman)
    }

    /// `unix:///…/podman.sock`, for `--docker-host` or `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("service.log")
    }

    /// `podman` with this engine's storage and configuration.
    pub fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--storage-driver=vfs")
            .arg(format!("--root={}", d.join("root").display()))
            .arg(format!("--runroot={}", d.join("run").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()));
        cmd
    }

    /// Runs a podman command against this engine and returns its standard output.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running podman {args:?}"))?;
        if !out.status.success() {
            bail!(
                "podman {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Builds the busybox session image (see the module docs) as `name` (e.g.
    /// `localhost/session:1`).
    pub fn import_session_image(&self, name: &str) -> anyhow::Result<()> {
        let rootfs = self.dir.path().join("rootfs");
        build_rootfs(&rootfs)?;
        let tar = self.dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .context("running tar")?;
        if !status.success() {
            bail!("tar of the session rootfs failed: {status}");
        }
        let cmd = format!("CMD [\"/bin/sh\", \"-c\", {STAND_IN_VNC:?}]");
        self.run(&["import", "--change", &cmd, &tar.display().to_string(), name])?;
        Ok(())
    }

    fn wait_for_api(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(&self.socket()).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.service.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("podman system service exited: {status}");
            }
            if Instant::now() >= deadline {
                bail!(
                    "no answer on {} within {START_TIMEOUT:?}",
                    self.docker_host()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // The service first, so that no request in flight (a slow stop of a failed test) holds
        // a container's lock; then the containers (their storage lives under our directory),
        // which the podman command removes without the service.
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.run(&["rm", "--all", "--force", "--time=0"]);
        let _ = self.run(&["volume", "rm", "--all", "--force"]);
    }
}

/// `GET /_ping` over the socket, answered `200 OK`.
fn ping(socket: &Path) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.0 200") && !answer.starts_with("HTTP/1.1 200") {
        bail!("unexpected answer: {answer:?}");
    }
    Ok(())
}

/// A minimal root filesystem: busybox-static and the applets the stand-in VNC needs.
fn build_rootfs(root: &Path) -> anyhow::Result<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("busybox not found (install the busybox-static package)")?;
    for sub in ["bin", "home", "tmp"] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox")).context("copying busybox")?;
    let rfb = root.join("bin/rfb");
    std::fs::write(&rfb, "#!/bin/sh\necho 'RFB 003.008'\n")?;
    std::fs::set_permissions(&rfb, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    for applet in ["sh", "nc", "sleep", "echo", "cat", "ls", "touch"] {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    Ok(())
}
