//! Throwaway Redis servers (and Sentinels) per test, killed on drop.
//!
//! Each [`RedisServer`] runs `redis-server` on its own port with persistence off, in a temporary
//! directory. [`RedisServer::kill`] and [`RedisServer::restart`] simulate an outage on the same
//! port. [`RedisSentinel`] runs `redis-server --sentinel` monitoring a master, for failover
//! tests. Both can be secured ([`RedisSecurity`]): TLS only, with a certificate from a
//! [`crate::tls::TestCa`], and a password. Starting fails loudly (with the log) if
//! `redis-server` is missing or does not answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::tls::CertFiles;

const REDIS_SERVER: &str = "redis-server";

/// What secures a Redis (or Sentinel): it listens only for TLS, with `server`'s certificate, and
/// requires `password` (`requirepass`, the `default` user's password).
#[derive(Debug, Clone)]
pub struct RedisSecurity {
    /// The CA that signed `server` (Redis needs one configured, though it asks clients for no
    /// certificate).
    pub ca: PathBuf,
    pub server: CertFiles,
    pub password: String,
}

impl RedisSecurity {
    /// `redis-server` arguments: no plain port, TLS on `port`.
    fn args(&self, port: u16) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &path(&self.server.cert),
            "--tls-key-file",
            &path(&self.server.key),
            "--tls-ca-cert-file",
            &path(&self.ca),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            &self.password,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Runs `redis-cli` over TLS against 127.0.0.1:`port`, logged in with the password.
    fn cli(&self, port: u16, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(&self.ca)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--no-auth-warning",
            ])
            .args(["-a", &self.password])
            .args(args)
            .output()
            .context("running redis-cli")?;
        if !output.status.success() {
            bail!(
                "redis-cli {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn wait_for_pong(&self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.cli(port, &["PING"]).is_ok_and(|r| r.trim() == "PONG") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("no PONG over TLS from 127.0.0.1:{port} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One `redis-server` process on 127.0.0.1.
pub struct RedisServer {
    dir: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
    security: Option<RedisSecurity>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `--replicaof HOST PORT`).
    pub fn start_with(extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_inner(extra, None)
    }

    /// Starts a server secured by `security` (TLS only, a password), with extra arguments
    /// (e.g. `--user NAME on >PASSWORD …` for an ACL user).
    pub fn start_secured(security: &RedisSecurity, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_inner(extra, Some(security.clone()))
    }

    fn start_inner(extra: &[&str], security: Option<RedisSecurity>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-redis-")
            .tempdir()
            .context("creating a directory for the test Redis")?;
        let mut server = Self {
            dir,
            port: crate::free_port()?,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            security,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`, or `rediss://…` when secured (with no credential).
    pub fn url(&self) -> String {
        let scheme = if self.security.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// Runs one command with `redis-cli` (over TLS and logged in, when secured); its output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        match &self.security {
            Some(security) => security.cli(self.port, args),
            None => command(self.port, args),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = self.port.to_string();
        let dir = self.dir.path().display().to_string();
        let log = self.log().display().to_string();
        let secured = self.security.as_ref().map(|s| s.args(self.port));
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir", &dir, "--logfile", &log])
            .args(secured.unwrap_or_default())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (install the redis-server package)")?;
        self.child = Some(child);
        let ready = match &self.security {
            Some(security) => security.wait_for_pong(self.port),
            None => wait_for_pong(self.port),
        };
        ready.with_context(|| {
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

/// A `redis-server --sentinel` monitoring one master as `name`, with quorum 1 (unless told
/// otherwise) and a one-second down-after, so a failover starts quickly.
pub struct RedisSentinel {
    _dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl RedisSentinel {
    pub fn start(name: &str, master_port: u16) -> anyhow::Result<Self> {
        Self::start_inner(name, master_port, 1, None)
    }

    /// One of several Sentinels that must agree (`quorum` of them) that the master is down
    /// before one of them fails it over; they find each other through the master.
    pub fn start_with_quorum(name: &str, master_port: u16, quorum: u32) -> anyhow::Result<Self> {
        Self::start_inner(name, master_port, quorum, None)
    }

    /// A Sentinel secured by `security` (TLS only, its own password) watching a master
    /// secured with TLS and `master_password`.
    pub fn start_secured(
        name: &str,
        master_port: u16,
        security: &RedisSecurity,
        master_password: &str,
    ) -> anyhow::Result<Self> {
        Self::start_inner(name, master_port, 1, Some((security, master_password)))
    }

    fn start_inner(
        name: &str,
        master_port: u16,
        quorum: u32,
        security: Option<(&RedisSecurity, &str)>,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-sentinel-")
            .tempdir()?;
        let port = crate::free_port()?;
        let conf = dir.path().join("sentinel.conf");
        let mut text = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
             sentinel monitor {name} 127.0.0.1 {master_port} {quorum}\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n",
            dir.path().display(),
            dir.path().join("sentinel.log").display()
        );
        if let Some((security, master_password)) = security {
            // Later lines win: no plain port; TLS to clients and to the master.
            for pair in security.args(port).chunks(2) {
                text.push_str(&format!("{} \"{}\"\n", &pair[0][2..], pair[1]));
            }
            text.push_str(&format!(
                "tls-replication yes\nsentinel auth-pass {name} {master_password}\n"
            ));
        }
        std::fs::write(&conf, text)?;
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
        match security {
            Some((security, _)) => security.wait_for_pong(port),
            None => wait_for_pong(port),
        }
        .context("the sentinel did not answer")?;
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

    /// Whether this Sentinel could fail `name` over now: it knows a replica whose link to the
    /// master is up and at least `other_sentinels` fellow Sentinels. A Sentinel learns of
    /// replicas from the master's INFO (every ten seconds) and of other Sentinels from hello
    /// messages through the master, so a master killed before both arrived is never failed
    /// over; tests wait for this before they kill it.
    pub fn ready_for_failover(&self, name: &str, other_sentinels: usize) -> anyhow::Result<bool> {
        let master = fields(&command(self.port, &["SENTINEL", "MASTER", name])?);
        let others: usize = master
            .iter()
            .find(|(k, _)| k == "num-other-sentinels")
            .context("no num-other-sentinels in SENTINEL MASTER")?
            .1
            .parse()?;
        let replicas = fields(&command(self.port, &["SENTINEL", "REPLICAS", name])?);
        let linked = replicas
            .iter()
            .any(|(k, v)| k == "master-link-status" && v == "ok");
        Ok(linked && others >= other_sentinels)
    }
}

/// The key/value pairs of a RESP reply made of arrays of bulk strings, nested arrays
/// flattened: what `SENTINEL MASTER` and `SENTINEL REPLICAS` answer.
fn fields(reply: &str) -> Vec<(String, String)> {
    let mut lines = reply.split("\r\n");
    let mut words = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('$') {
            // The next line is the string, possibly empty.
            words.push(lines.next().unwrap_or_default());
        }
    }
    words
        .chunks_exact(2)
        .map(|p| (p[0].to_owned(), p[1].to_owned()))
        .collect()
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
