//! Why the agent stopped.

use std::path::PathBuf;

use crate::leadership::LeadershipError;
use crate::runtime::RuntimeError;

/// A failure that ends [`crate::run`]. Connection problems never do: the agent reconnects.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot use the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("recovering sessions from the previous run failed: {0}")]
    Recovery(#[source] RuntimeError),
    #[error("cannot tell whether this agent process is the active one")]
    Leadership(#[source] LeadershipError),
}
