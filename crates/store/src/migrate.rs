//! Schema migrations: `streamspace migrate up|down|status` and the automatic run at server start.
//!
//! Each backend has its own numbered, reversible migrations (`migrations/postgres`,
//! `migrations/sqlite`), embedded in the binary. This module is the only migrator: nothing in
//! the schema is ever changed by hand.

/// Whether one migration is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    Applied,
    Pending,
}

/// One migration, as `migrate status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub state: MigrationState,
}
