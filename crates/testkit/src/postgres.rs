//! A throwaway PostgreSQL cluster per test process, in a temporary directory, stopped on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the cluster is owned by the
//! `postgres` system user and started through `runuser`. Each test creates its own database with
//! [`PgCluster::create_database`], so tests never see each other's rows.
//! [`PgCluster::start_tls`] also serves TLS with a given certificate, for `sslmode=verify-full`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use rand::Rng;

const PG_BIN_DIRS: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
];

/// A running PostgreSQL cluster listening on 127.0.0.1.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl PgCluster {
    /// Creates and starts a new cluster. Fails with the tool's output if PostgreSQL is missing or
    /// does not start.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_inner(None, false)
    }

    /// [`Self::start`] with durable commits (`fsync`, `synchronous_commit` and
    /// `full_page_writes` on, as a production database runs), for benchmarks that report
    /// both settings; the tests run with them off.
    pub fn start_durable() -> anyhow::Result<Self> {
        Self::start_inner(None, true)
    }

    /// [`Self::start`], also serving TLS (`ssl=on`) with `server`'s certificate and key, which
    /// are copied into the cluster's directory (PostgreSQL wants its key owned by itself, 0600).
    /// Clients may still connect without TLS; `sslmode` decides.
    pub fn start_tls(server: &crate::CertFiles) -> anyhow::Result<Self> {
        Self::start_inner(Some(server), false)
    }

    fn start_inner(tls: Option<&crate::CertFiles>, durable: bool) -> anyhow::Result<Self> {
        let bin = PG_BIN_DIRS
            .iter()
            .map(PathBuf::from)
            .find(|d| d.join("initdb").exists())
            .with_context(|| {
                format!("PostgreSQL server binaries not found in any of {PG_BIN_DIRS:?}; install postgresql")
            })?;
        let as_postgres_user = is_root();
        let dir = tempfile::Builder::new()
            .prefix("streamspace-pg-")
            .tempdir()
            .context("creating a directory for the test PostgreSQL cluster")?;
        if as_postgres_user {
            run(Command::new("chown").arg("postgres").arg(dir.path()))?;
        }
        let data = dir.path().join("data");
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            as_postgres_user,
        };
        run(cluster.pg_command("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]))?;
        let ssl = match tls {
            Some(files) => cluster.install_certificate(files)?,
            None => String::new(),
        };
        let commits = if durable {
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
        } else {
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        // Retry on a port taken between choosing and binding.
        let mut last_err = None;
        for _ in 0..5 {
            let port = crate::free_port()?;
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 {commits} -c max_connections=200{ssl}",
                cluster.dir.path().display()
            );
            let result = run(cluster
                .pg_command("pg_ctl")
                .arg("-w")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.dir.path().join("log"))
                .arg("-o")
                .arg(options)
                .arg("start"));
            match result {
                Ok(()) => {
                    cluster.port = port;
                    return Ok(cluster);
                }
                Err(e) => last_err = Some(e),
            }
        }
        let log = std::fs::read_to_string(cluster.dir.path().join("log")).unwrap_or_default();
        Err(last_err.expect("the loop ran at least once"))
            .with_context(|| format!("starting PostgreSQL failed; server log:\n{log}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the `postgres` maintenance database.
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database with a random name and returns its URL.
    pub fn create_database(&self) -> anyhow::Result<String> {
        let name = format!("t_{:016x}", rand::rng().random::<u64>());
        run(Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg(&name))?;
        Ok(self.url_for(&name))
    }

    /// Runs `sql` against the database at `database_url` (one of this cluster's) with `psql`,
    /// stopping at the first error: how a test reaches into the database behind a server, e.g.
    /// to make a statement fail for a while.
    pub fn execute(&self, database_url: &str, sql: &str) -> anyhow::Result<()> {
        run(Command::new(self.bin.join("psql")).args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database_url,
            "-c",
            sql,
        ]))
    }

    /// Copies `files` into the cluster's directory, readable by the server only; the options
    /// that turn TLS on with them.
    fn install_certificate(&self, files: &crate::CertFiles) -> anyhow::Result<String> {
        use std::os::unix::fs::PermissionsExt;
        let cert = self.dir.path().join("server.crt");
        let key = self.dir.path().join("server.key");
        std::fs::copy(&files.cert, &cert).context("copying the server certificate")?;
        std::fs::copy(&files.key, &key).context("copying the server key")?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        if self.as_postgres_user {
            run(Command::new("chown").arg("postgres").arg(&cert).arg(&key))?;
        }
        Ok(format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        ))
    }

    /// The cluster's data directory (for reading its log when a test fails).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn pg_command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed with {}:\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
