//! Schemathesis (PyPI), the property-based API fuzzer, for the test that fuzzes a running
//! control plane from its OpenAPI document.
//!
//! It lives in a virtualenv under the workspace's `target/tools/` (`.ci/run` makes it ahead of
//! the tests; a test makes it itself on first use, under a file lock, since nextest runs tests
//! as parallel processes). A missing Python or a failed install fails the test loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The version the tests run (its checks and command line are what the test expects).
pub const VERSION: &str = "4.32.5";

/// The virtualenv's folder.
pub fn venv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/tools/schemathesis")
        .components()
        .collect()
}

/// The `schemathesis` program, installed if it is not there yet.
pub fn install() -> anyhow::Result<PathBuf> {
    let dir = venv_dir();
    let program = dir.join("bin/schemathesis");
    let marker = dir.join(format!("installed-{VERSION}"));
    if marker.exists() && program.exists() {
        return Ok(program);
    }
    std::fs::create_dir_all(dir.parent().context("the venv has a parent")?)?;
    let lock_path = std::env::temp_dir().join("streamspace-testkit-schemathesis.lock");
    let lock_file = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the Schemathesis install")?;
    if marker.exists() && program.exists() {
        return Ok(program);
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir))
        .context("making a virtualenv (the API fuzzing test needs python3 with venv)")?;
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={VERSION}")))
    .context("installing Schemathesis from PyPI")?;
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
