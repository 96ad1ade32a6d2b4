//! Throwaway Redis servers (and Sentinels) per test, killed on drop.
//!
//! Each [`RedisServer`] runs `redis-server` on its own port with persistence off, in a temporary
//! directory. [`RedisServer::kill`] and [`RedisServer::restart`] simulate an outage on the same
//! port. [`RedisSentinel`] runs `redis-server --sentinel` monitoring a master, for failover
//! tests. Starting fails loudly (with the log) if `redis-server` is missing or does not answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const REDIS_SERVER: &str = "redis-server";
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One `redis-server` process on 127.0.0.1.
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `--replicaof HOST PORT`).
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-redis-")
            .tempdir()
            .context("creating a directory for the test Redis")?;
        let mut server = Self {
            dir,
            port: crate::free_port()?,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let dir = self.dir.path().display().to_string();
        let log = self.log().display().to_string();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir", &dir, "--logfile", &log])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install the redis-server package)")?;
        self.child = Some(child);
        wait_for_pong(self.port).with_context(|| {
            format!(
                "redis-server on port {} did not answer; log:\n{}",
                self.port,
                std::fs::read_to_string(self.log()).unwrap_or_default()
            )
        })
    }

    /// SIGKILLs the server (its data is gone: persistence is off).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGSTOP: a hung Redis, whose connections stay open and whose
    /// port still accepts, but which answers nothing until [`RedisServer::resume`].
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.send(nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a frozen server go on (SIGCONT), with its data as it was.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.send(nix::sys::signal::Signal::SIGCONT)
    }

    fn send(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .context("the test Redis is not running")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            .with_context(|| format!("sending {signal} to redis-server"))
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server --sentinel` monitoring one master as `name`, with quorum 1 and a one-second
/// down-after, so a failover starts quickly.
pub struct RedisSentinel {
    _dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl RedisSentinel {
    pub fn start(name: &str, master_port: u16) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-sentinel-")
            .tempdir()?;
        let port = crate::free_port()?;
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir.path().display(),
                dir.path().join("sentinel.log").display()
            ),
        )?;
        let child = Command::new(REDIS_SERVER)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server --sentinel")?;
        let sentinel = Self {
            _dir: dir,
            port,
            child,
        };
        wait_for_pong(port).context("the sentinel did not answer")?;
        Ok(sentinel)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The master's port as the sentinel currently sees it.
    pub fn master_port(&self, name: &str) -> anyhow::Result<u16> {
        let reply = command(self.port, &["SENTINEL", "get-master-addr-by-name", name])?;
        // *2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n
        let port = reply
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with(['*', '$']))
            .nth(1)
            .context("unexpected sentinel reply")?;
        Ok(port.parse()?)
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command in RESP and returns the raw reply.
pub fn command(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes())?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_for_pong(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if command(port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG")) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("no PONG from 127.0.0.1:{port} within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
