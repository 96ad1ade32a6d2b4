//! Python tools the tests run (Schemathesis, moto): each in its own virtualenv under the
//! workspace's `target/tools/`, at a pinned version. `scripts/test` makes them ahead of the
//! tests; a test makes one itself on first use, under a file lock, since nextest runs tests as
//! parallel processes. A missing Python or a failed install fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// One tool: the PyPI requirement `package==version`, and the program it installs.
pub struct PyTool {
    /// The virtualenv's folder name under `target/tools/`.
    pub name: &'static str,
    /// The PyPI package, extras included (`moto[server]`).
    pub package: &'static str,
    pub version: &'static str,
    /// The program in the virtualenv's `bin/`.
    pub program: &'static str,
    /// What needs it, for the error when Python cannot make a virtualenv.
    pub needed_by: &'static str,
}

impl PyTool {
    /// The virtualenv's folder.
    pub fn venv_dir(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/tools")
            .join(self.name)
            .components()
            .collect()
    }

    /// The program, installed if it is not there yet.
    pub fn install(&self) -> anyhow::Result<PathBuf> {
        let dir = self.venv_dir();
        let program = dir.join("bin").join(self.program);
        let marker = dir.join(format!("installed-{}", self.version));
        if marker.exists() && program.exists() {
            return Ok(program);
        }
        std::fs::create_dir_all(dir.parent().context("the venv has a parent")?)?;
        let lock_path =
            std::env::temp_dir().join(format!("streamspace-testkit-{}.lock", self.name));
        let lock_file = std::fs::File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("locking the {} install", self.name))?;
        if marker.exists() && program.exists() {
            return Ok(program);
        }
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir)).with_context(|| {
            format!(
                "making a virtualenv ({} needs python3 with venv)",
                self.needed_by
            )
        })?;
        run(Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{}=={}", self.package, self.version)))
        .with_context(|| format!("installing {} from PyPI", self.package))?;
        std::fs::write(&marker, self.version)?;
        Ok(program)
    }
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
