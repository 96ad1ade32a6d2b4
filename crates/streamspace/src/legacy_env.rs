//! Environment variables that were renamed, still read under their old names with a warning.
//!
//! clap reads one variable per flag, so the old names are read here, and only when neither the
//! flag nor its new variable is set: a setting is never taken from two places. Each function takes
//! the environment as a lookup function so tests can pass their own.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration::{DurationError, DurationParser};

/// Reads one environment variable; [`process_env`] outside tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The process's environment, an empty value counting as unset.
pub fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// A renamed variable holds a value its setting cannot take.
#[derive(Debug, thiserror::Error)]
pub enum LegacyEnvError {
    #[error("invalid value for {var} (renamed {new}): {source}")]
    Duration {
        var: &'static str,
        new: &'static str,
        source: DurationError,
    },
    #[error("{var} is not valid UTF-8")]
    NotUnicode { var: &'static str },
}

/// `value` if the flag or its new variable gave one, else the old variable `old`, read by
/// `parser` like the flag.
pub fn duration(
    value: Option<Duration>,
    old: &'static str,
    new: &'static str,
    parser: DurationParser,
    env: Lookup,
) -> Result<Option<Duration>, LegacyEnvError> {
    if value.is_some() {
        return Ok(value);
    }
    let Some(raw) = env(old) else {
        return Ok(None);
    };
    let text = raw
        .to_str()
        .ok_or(LegacyEnvError::NotUnicode { var: old })?;
    let parsed = parser
        .parse(text)
        .map_err(|source| LegacyEnvError::Duration {
            var: old,
            new,
            source,
        })?;
    tracing::warn!("{old} is deprecated; set {new} instead");
    Ok(Some(parsed))
}

/// The agent's control-plane URLs: `--server`/`STREAMSPACE_AGENT_SERVERS`, else the list an
/// older release read from `STREAMSPACE_SERVER` (which now only names the client commands' server).
pub fn agent_servers(servers: Vec<String>, env: Lookup) -> Result<Vec<String>, LegacyEnvError> {
    if !servers.is_empty() {
        return Ok(servers);
    }
    let Some(raw) = env("STREAMSPACE_SERVER") else {
        return Ok(servers);
    };
    let text = raw.to_str().ok_or(LegacyEnvError::NotUnicode {
        var: "STREAMSPACE_SERVER",
    })?;
    tracing::warn!(
        "the agent read its servers from STREAMSPACE_SERVER, which is deprecated for agents; \
         set STREAMSPACE_AGENT_SERVERS (comma-separated) instead"
    );
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Where an agent without `--state-dir` kept its state under an older release when
/// `STREAMSPACE_DATA_DIR` was set: that directory, which now belongs to `streamspace up` and the
/// client commands. `None` when it is not set.
pub fn agent_state_parent(env: Lookup) -> Option<PathBuf> {
    let dir = env("STREAMSPACE_DATA_DIR")?;
    tracing::warn!(
        "the agent placed its state under STREAMSPACE_DATA_DIR, which is deprecated for agents; \
         set STREAMSPACE_STATE_DIR (or --state-dir) instead"
    );
    Some(PathBuf::from(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn an_old_duration_variable_is_read_only_when_the_new_setting_is_absent() {
        let env = env_of(&[("STREAMSPACE_HA_RETRY_MS", "250")]);
        let read = |value| {
            duration(
                value,
                "STREAMSPACE_HA_RETRY_MS",
                "STREAMSPACE_HA_RETRY",
                DurationParser::millis(),
                &env,
            )
        };
        assert_eq!(
            read(None).expect("the old variable parses"),
            Some(Duration::from_millis(250)),
            "a bare number keeps the old variable's unit"
        );
        assert_eq!(
            read(Some(Duration::from_secs(2))).expect("the new setting wins"),
            Some(Duration::from_secs(2))
        );
        let none = env_of(&[]);
        let unset = duration(None, "A", "B", DurationParser::secs(), &none);
        assert_eq!(unset.expect("nothing set"), None);
    }

    #[test]
    fn an_invalid_old_variable_is_refused_naming_it() {
        let env = env_of(&[("STREAMSPACE_LEASE_SECS", "1")]);
        let parser = DurationParser::secs().at_least(Duration::from_secs(3));
        let err = duration(
            None,
            "STREAMSPACE_LEASE_SECS",
            "STREAMSPACE_LEASE",
            parser,
            &env,
        )
        .expect_err("1 s is below the lease's minimum");
        let text = err.to_string();
        assert!(text.contains("STREAMSPACE_LEASE_SECS"), "{text}");
        assert!(text.contains("least allowed, 3s"), "{text}");
    }

    #[test]
    fn agents_fall_back_to_the_clients_server_variable() {
        let env = env_of(&[("STREAMSPACE_SERVER", "http://a:8080, http://b:8080")]);
        assert_eq!(
            agent_servers(vec![], &env).expect("readable"),
            ["http://a:8080", "http://b:8080"]
        );
        assert_eq!(
            agent_servers(vec!["http://c".into()], &env).expect("readable"),
            ["http://c"],
            "--server or STREAMSPACE_AGENT_SERVERS wins"
        );
        assert!(
            agent_servers(vec![], &env_of(&[]))
                .expect("readable")
                .is_empty()
        );
    }

    #[test]
    fn the_old_agent_state_parent_comes_from_the_data_dir() {
        let env = env_of(&[("STREAMSPACE_DATA_DIR", "/srv/streamspace")]);
        assert_eq!(
            agent_state_parent(&env),
            Some(PathBuf::from("/srv/streamspace"))
        );
        assert_eq!(agent_state_parent(&env_of(&[])), None);
    }
}
