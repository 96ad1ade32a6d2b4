//! A fresh, empty database for one test: a SQLite file in a directory of its own, or a database
//! of its own in a shared throwaway PostgreSQL cluster ([`PgCluster::create_database`]).
//!
//! Nothing is migrated here: the server migrates at start, and the tests of the migrator want
//! the database empty.

use std::path::Path;

use anyhow::Context;

use crate::PgCluster;

/// The URL of the SQLite database file at `path` (created on first use).
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// One test's database, and the directory that holds it when it is a SQLite file (removed on
/// drop).
pub struct TestDatabase {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// `streamspace.db` in a new temporary directory.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamspace-sqlite-")
            .tempdir()
            .context("creating a directory for the SQLite database")?;
        Ok(Self {
            url: sqlite_url(&dir.path().join("streamspace.db")),
            _dir: Some(dir),
        })
    }

    /// A new database in `cluster`; it lives as long as the cluster.
    pub fn postgres(cluster: &PgCluster) -> anyhow::Result<Self> {
        Ok(Self {
            url: cluster.create_database()?,
            _dir: None,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}
