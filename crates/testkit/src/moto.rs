//! An S3-compatible object store for tests: `moto_server` (PyPI `moto[server]`) on a free
//! loopback port, killed on drop.
//!
//! moto lives in a virtualenv under the workspace's `target/tools/` (`.ci/run` makes it ahead
//! of the tests; a test makes it itself on first use, under a file lock, since nextest runs
//! tests as parallel processes). A missing Python, a failed install or a server that does not
//! answer fails the test loudly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The version the tests run.
pub const VERSION: &str = "5.2.5";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The virtualenv's folder.
pub fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tools/moto")
        .components()
        .collect()
}

/// The `moto_server` program, installed if it is not there yet.
pub fn install() -> anyhow::Result<PathBuf> {
    let dir = venv_dir();
    let program = dir.join("bin/moto_server");
    let marker = dir.join(format!("installed-{VERSION}"));
    if marker.exists() && program.exists() {
        return Ok(program);
    }
    std::fs::create_dir_all(dir.parent().context("the venv has a parent")?)?;
    let lock_path = std::env::temp_dir().join("streamspace-testkit-moto.lock");
    let lock_file = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the moto install")?;
    if marker.exists() && program.exists() {
        return Ok(program);
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir))
        .context("making a virtualenv (the S3 tests need python3 with venv)")?;
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("moto[server]=={VERSION}")))
    .context("installing moto[server] from PyPI")?;
    std::fs::write(&marker, VERSION)?;
    Ok(program)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A running `moto_server`.
pub struct MotoServer {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts one and waits until it answers HTTP.
    pub fn start() -> anyhow::Result<Self> {
        let program = install()?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("moto.log");
        let port = crate::free_port()?;
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut server = Self {
            port,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while server.request("GET", "/").is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("moto_server exited ({status}):\n{}", server.logs());
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto_server did not answer on port {port} within {START_TIMEOUT:?}:\n{}",
                    server.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let status = self.request("PUT", &format!("/{name}"))?;
        if !status.contains(" 200 ") {
            bail!("creating bucket {name}: {status}\n{}", self.logs());
        }
        Ok(())
    }

    /// What the server logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a bodiless request; returns the status line.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            tcp,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        tcp.read_to_string(&mut answer)?;
        Ok(answer.lines().next().unwrap_or_default().to_owned())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
