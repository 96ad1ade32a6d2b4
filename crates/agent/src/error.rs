//! Why the agent stopped, and how the agent words an error in one line.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;

use crate::RuntimeKind;
use crate::leadership::LeadershipError;
use crate::runtime::RuntimeError;
use crate::runtime::kubernetes::ConnectError;

/// A failure that ends [`crate::run`]. Connection problems never do: the agent reconnects.
///
/// Like every error of this crate, its message says what failed at its own level and leaves the
/// why to its [`source`](Error::source); print the whole chain (the CLI does, and [`Chain`]
/// does in one line).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid agent configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot use the state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the {runtime} runtime")]
    Runtime {
        runtime: RuntimeKind,
        #[source]
        source: RuntimeError,
    },
    #[error("cannot reach the Kubernetes cluster")]
    Cluster(#[source] ConnectError),
    #[error("recovering sessions from the previous run failed")]
    Recovery(#[source] RuntimeError),
    #[error("cannot tell whether this agent process is the active one")]
    Leadership(#[source] LeadershipError),
    #[error("cannot set up TLS to the control plane")]
    Tls(#[source] streamspace_client::tls::TlsError),
    #[error(transparent)]
    PlainUrl(#[from] streamspace_client::tls::PlainUrlRefused),
}

/// An error and its sources in one line, `outer: inner: innermost`: how the agent reports an
/// error to the control plane (a failed command's error is shown to the user) and in log lines.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No level of the chain repeats the text of its source.
    fn assert_says_each_fact_once(e: &(dyn Error + 'static)) {
        let mut level = Some(e);
        while let Some(error) = level {
            if let Some(source) = error.source() {
                let (outer, inner) = (error.to_string(), source.to_string());
                assert!(!outer.contains(&inner), "{outer:?} repeats {inner:?}");
            }
            level = error.source();
        }
    }

    #[test]
    fn errors_leave_the_why_to_their_source() {
        let io = || std::io::Error::other("disk full");
        let status = kube::core::Status {
            message: "deployments.apps is forbidden".into(),
            reason: "Forbidden".into(),
            code: 403,
            ..Default::default()
        };
        let errors: Vec<Box<dyn Error + 'static>> = vec![
            Box::new(AgentError::Recovery(RuntimeError::io(
                "reading state",
                io(),
            ))),
            Box::new(AgentError::Runtime {
                runtime: RuntimeKind::Docker,
                source: RuntimeError::Docker {
                    what: "listing session containers".into(),
                    source: bollard::errors::Error::DockerResponseServerError {
                        status_code: 500,
                        message: "engine exploded".into(),
                    },
                },
            }),
            Box::new(RuntimeError::KubernetesApi {
                what: "creating the session's deployment".into(),
                code: 403,
                source: Box::new(status),
            }),
            Box::new(AgentError::Leadership(LeadershipError::Lock(
                crate::leadership::flock::LockError::Open {
                    path: "/run/agent.lock".into(),
                    source: io(),
                },
            ))),
        ];
        for e in &errors {
            assert_says_each_fact_once(e.as_ref());
        }
        assert_eq!(
            Chain(errors[2].as_ref()).to_string(),
            "creating the session's deployment (HTTP 403): deployments.apps is forbidden: Forbidden"
        );
    }

    #[test]
    fn a_chain_says_each_level_once() {
        let io = std::io::Error::other("disk full");
        let e = AgentError::StateDir {
            path: "/var/lib/agent".into(),
            source: io,
        };
        assert_eq!(
            Chain(&e).to_string(),
            "cannot use the state directory /var/lib/agent: disk full"
        );
    }
}
