//! From a control-plane base URL to the agent's WebSocket endpoint.
//!
//! Operators give the base URL they use for the API (`https://streamspace.example/`, possibly
//! with a path prefix behind a reverse proxy); the agent derives `wss://…/api/v1/agents/connect`
//! from it, so there is one URL to configure.

use url::Url;

use crate::AgentError;

const CONNECT_PATH: &str = "api/v1/agents/connect";

/// The WebSocket URL of the agent endpoint under `base`.
pub fn connect_url(base: &str) -> Result<Url, AgentError> {
    let invalid =
        |reason: String| AgentError::InvalidConfig(format!("server URL {base:?}: {reason}"));
    let mut url = Url::parse(base).map_err(|e| invalid(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(invalid(format!(
                "unsupported scheme {other:?}; use http or https"
            )));
        }
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_owned()));
    }
    url.set_scheme(scheme)
        .map_err(|()| invalid("cannot change the scheme".to_owned()))?;
    let prefix = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{prefix}/{CONNECT_PATH}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(base: &str) -> String {
        match connect_url(base) {
            Ok(url) => url.to_string(),
            Err(e) => panic!("{base}: {e}"),
        }
    }

    #[test]
    fn maps_schemes_and_keeps_prefixes() {
        assert_eq!(
            ok("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/api/v1/agents/connect"
        );
        assert_eq!(
            ok("https://ss.example/"),
            "wss://ss.example/api/v1/agents/connect"
        );
        assert_eq!(
            ok("https://ss.example:8443/streamspace/"),
            "wss://ss.example:8443/streamspace/api/v1/agents/connect"
        );
        assert_eq!(
            ok("http://h/prefix?x=1#frag"),
            "ws://h/prefix/api/v1/agents/connect"
        );
    }

    #[test]
    fn rejects_what_cannot_be_a_control_plane() {
        for bad in ["ftp://h", "not a url", "file:///tmp/x", ""] {
            assert!(
                matches!(connect_url(bad), Err(AgentError::InvalidConfig(_))),
                "{bad:?} should be rejected"
            );
        }
    }
}
