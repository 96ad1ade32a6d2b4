//! Schemathesis (PyPI), the property-based API fuzzer, for the test that fuzzes a running
//! control plane from its OpenAPI document.
//!
//! It lives in a virtualenv under the workspace's `target/tools/` (`scripts/test` makes it ahead of
//! the tests; a test makes it itself on first use, under a file lock, since nextest runs tests
//! as parallel processes). A missing Python or a failed install fails the test loudly.

use std::path::PathBuf;

use crate::pytool::PyTool;

/// The version the tests run (its checks and command line are what the test expects).
pub const VERSION: &str = "4.32.5";

const TOOL: PyTool = PyTool {
    name: "schemathesis",
    package: "schemathesis",
    version: VERSION,
    program: "schemathesis",
    needed_by: "the API fuzzing test",
};

/// The virtualenv's folder.
pub fn venv_dir() -> PathBuf {
    TOOL.venv_dir()
}

/// The `schemathesis` program, installed if it is not there yet.
pub fn install() -> anyhow::Result<PathBuf> {
    TOOL.install()
}
