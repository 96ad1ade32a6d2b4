//! Session rules as the control plane applies them: the server's defaults, the limits on what
//! an API request may set, and [`effective`] — the one place that works out which clipboard,
//! file-transfer and recording rules apply to one user acting on one session.
//!
//! The levels are the copy of its template's rules the session took at creation, the rules of
//! the acting user's groups (read now, so a change to a group applies at the next connection or
//! transfer), and the server's defaults; [`SessionRules::effective`] combines them (the stricter
//! wins per field). Callers — a viewer connecting, a transfer starting, a recording decision —
//! ask here and never decide these themselves.

use streamspace_proto::api::{EffectiveRules, Session, SessionRules};

use crate::error::ApiError;
use crate::policy::Principal;
use crate::state::AppState;

/// Largest clipboard limit a level may set, in bytes (clipboard text crosses the tunnel whole).
pub(crate) const MAX_CLIPBOARD_BYTES: u32 = 16 * 1024 * 1024;

/// A rule a request may not set; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidRules {
    #[error("rules.clipboard_max_bytes must be 1-{MAX_CLIPBOARD_BYTES}, got {0}")]
    ClipboardMax(u32),
    #[error("rules.transfer_max_bytes must be at least 1")]
    TransferMax,
}

/// Checks the limits of rules a template or group is given.
pub(crate) fn validate(rules: &SessionRules) -> Result<(), InvalidRules> {
    if let Some(max) = rules.clipboard_max_bytes
        && !(1..=MAX_CLIPBOARD_BYTES).contains(&max)
    {
        return Err(InvalidRules::ClipboardMax(max));
    }
    if rules.transfer_max_bytes == Some(0) {
        return Err(InvalidRules::TransferMax);
    }
    Ok(())
}

/// The rules that apply to `principal` acting on `session` now.
pub(crate) async fn effective(
    app: &AppState,
    session: &Session,
    principal: &Principal,
) -> Result<EffectiveRules, ApiError> {
    let template = app
        .store
        .session_rules(session.id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading a session's rules"))?;
    let groups = app
        .store
        .user_group_rules(principal.user_id)
        .await
        .map_err(|e| ApiError::from_store(e, "reading group rules"))?;
    Ok(SessionRules::effective(
        &template,
        &groups,
        &app.config.session_rules,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_field() {
        assert_eq!(validate(&SessionRules::default()), Ok(()));
        let zero = SessionRules {
            clipboard_max_bytes: Some(0),
            ..SessionRules::default()
        };
        let err = validate(&zero).map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|m| m.starts_with("rules.clipboard_max_bytes")),
            "{err:?}"
        );
        let huge = SessionRules {
            clipboard_max_bytes: Some(MAX_CLIPBOARD_BYTES + 1),
            ..SessionRules::default()
        };
        assert!(validate(&huge).is_err());
        let no_files = SessionRules {
            transfer_max_bytes: Some(0),
            ..SessionRules::default()
        };
        assert_eq!(validate(&no_files), Err(InvalidRules::TransferMax));
    }
}
