//! OpenID Connect providers for tests, killed on drop: a real one ([`OidcProvider`], npm
//! `oidc-provider`, with its own login page) and a misbehaving one ([`RogueProvider`]) whose ID
//! tokens are wrong on purpose, for the negative cases a certified provider never produces.
//!
//! Both run `crates/testkit/oidc/op.mjs` under Node.js on a free loopback port. Its npm
//! packages are installed on first use (`npm ci`, under a file lock, since nextest runs tests
//! as parallel processes); starting fails loudly, with the provider's log, when Node.js or the
//! packages are missing or the provider does not answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The folder with the providers' script, `package.json` and lock file.
pub fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// Installs the providers' npm packages unless they are there.
pub fn install() -> anyhow::Result<PathBuf> {
    let dir = script_dir();
    let installed = || dir.join("node_modules/oidc-provider/package.json").exists();
    if installed() {
        return Ok(dir);
    }
    let lock_path = std::env::temp_dir().join("streamspace-testkit-oidc-npm.lock");
    let lock_file = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the npm install of the test OpenID provider")?;
    if installed() {
        return Ok(dir);
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .context("running npm (the OpenID Connect tests need Node.js 20+ and npm)")?;
    if !output.status.success() || !installed() {
        bail!(
            "npm ci in {} failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(dir)
}

/// A client registered at the real provider.
#[derive(Debug, Clone)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

/// The real provider: `oidc-provider` with its development login page (any login, any
/// password; the login is the subject).
pub struct OidcProvider {
    process: NodeProcess,
    accounts: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub issuer: String,
}

impl OidcProvider {
    pub fn start(clients: &[OidcClient]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-oidc-")
            .tempdir()
            .context("creating a directory for the test OpenID provider")?;
        let accounts = dir.path().join("accounts.json");
        std::fs::write(&accounts, "{}")?;
        let config = dir.path().join("config.json");
        let clients: Vec<Value> = clients
            .iter()
            .map(|c| {
                json!({ "client_id": c.client_id, "client_secret": c.client_secret,
                        "redirect_uris": [c.redirect_uri] })
            })
            .collect();
        std::fs::write(
            &config,
            json!({ "clients": clients, "accounts": accounts }).to_string(),
        )?;
        let process = NodeProcess::start(dir, "real", &[config.display().to_string()])?;
        let issuer = format!("http://127.0.0.1:{}", process.port);
        process.wait_for("/.well-known/openid-configuration")?;
        Ok(Self {
            process,
            accounts,
            issuer,
        })
    }

    /// Sets what the provider says about `login` from its next sign-in on: `claims` may hold
    /// `groups`, `email`, `preferred_username`, `name`.
    pub fn set_account(&self, login: &str, claims: Value) -> anyhow::Result<()> {
        let mut all: Value = serde_json::from_slice(&std::fs::read(&self.accounts)?)?;
        all[login] = claims;
        std::fs::write(&self.accounts, all.to_string())?;
        Ok(())
    }

    /// The provider's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The misbehaving provider: one issuer per flaw, `http://127.0.0.1:PORT/<flaw>`, whose
/// authorization endpoint answers at once (no login page) with a code for a token that has
/// that flaw. Flaws: `good` (none), `nonce`, `otherkey` (signed by a key its JWKS does not
/// publish), `audience`, `expired`, `issuer`, `unsigned` (`alg: none`).
pub struct RogueProvider {
    process: NodeProcess,
}

impl RogueProvider {
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-rogue-oidc-")
            .tempdir()
            .context("creating a directory for the rogue OpenID provider")?;
        let process = NodeProcess::start(dir, "rogue", &[])?;
        process.wait_for("/good/.well-known/openid-configuration")?;
        Ok(Self { process })
    }

    /// The issuer URL of the flaw.
    pub fn issuer(&self, flaw: &str) -> String {
        format!("http://127.0.0.1:{}/{flaw}", self.process.port)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

struct NodeProcess {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl NodeProcess {
    fn start(dir: tempfile::TempDir, mode: &str, extra: &[String]) -> anyhow::Result<Self> {
        let script_dir = install()?;
        let port = crate::free_port()?;
        let log = std::fs::File::create(dir.path().join("provider.log"))?;
        let child = Command::new("node")
            .arg(script_dir.join("op.mjs"))
            .args([mode, &port.to_string()])
            .args(extra)
            .current_dir(&script_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting node (the OpenID Connect tests need Node.js 20+)")?;
        Ok(Self { dir, port, child })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }

    /// Waits until `path` answers 200.
    fn wait_for(&self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if http_ok(self.port, path) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "the test OpenID provider on port {} did not answer {path}; log:\n{}",
            self.port,
            self.log()
        )
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}
