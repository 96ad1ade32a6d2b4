//! An S3-compatible object store for tests: `moto_server` (PyPI `moto[server]`) on a free
//! loopback port, killed on drop.
//!
//! moto lives in a virtualenv under the workspace's `target/tools/` (`scripts/test` makes it ahead
//! of the tests; a test makes it itself on first use, under a file lock, since nextest runs
//! tests as parallel processes). A missing Python, a failed install or a server that does not
//! answer fails the test loudly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::pytool::PyTool;

/// The version the tests run.
pub const VERSION: &str = "5.2.5";

const START_TIMEOUT: Duration = Duration::from_secs(30);

const TOOL: PyTool = PyTool {
    name: "moto",
    package: "moto[server]",
    version: VERSION,
    program: "moto_server",
    needed_by: "the S3 tests",
};

/// The virtualenv's folder.
pub fn venv_dir() -> PathBuf {
    TOOL.venv_dir()
}

/// The `moto_server` program, installed if it is not there yet.
pub fn install() -> anyhow::Result<PathBuf> {
    TOOL.install()
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
