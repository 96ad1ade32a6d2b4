//! The two kinds of tunnel token.
//!
//! - **Viewer tokens** (`ssv_…`) open `GET /api/v1/sessions/{id}/vnc` from a browser. They are
//!   signed, not stored: `ssv_<session>.<user>.<expires ms>.<nonce>.<HMAC>` with the viewer-token
//!   key every replica derives from the master secret (`crate::keyring`), so any replica can
//!   check a token another one issued. They are
//!   short-lived and name one session and the user they were issued to; whether that session is
//!   still running and that user still enabled is checked in the database on every use, so a
//!   token is worthless once its session has ended or its user lost access.
//! - **Stream tokens** (`sst_…`) authenticate one agent data connection. They are random, live
//!   only in the memory of the replica holding the viewer, and are taken out on first use.

use chrono::{DateTime, Utc};
use streamspace_proto::tunnel::{
    STREAM_TOKEN_PREFIX, VIEWER_TOKEN_PREFIX, parse_viewer_token, viewer_token_signed_part,
};
use uuid::Uuid;

use crate::keyring::{Keyring, ViewerTokens};
use crate::keys::generate_secret;

/// What a valid viewer token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ViewerGrant {
    pub session_id: Uuid,
    /// Who the token was issued to.
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Why a viewer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the token is not a valid viewer token")]
    Invalid,
    #[error("the token has expired; ask for a new one")]
    Expired,
}

/// Issues a viewer token for `session_id` to the user `user_id`, valid until `expires_at`.
pub(crate) fn issue_viewer(
    key: &Keyring<ViewerTokens>,
    session_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> String {
    let nonce = hex::encode(rand::random::<[u8; 12]>());
    let body = viewer_token_signed_part(session_id, user_id, expires_at.timestamp_millis(), &nonce);
    let sig = key.mac(&signed_text(&body));
    format!("{VIEWER_TOKEN_PREFIX}{body}.{sig}")
}

/// Checks a viewer token's signature and expiry at `now`.
pub(crate) fn verify_viewer(
    key: &Keyring<ViewerTokens>,
    token: &str,
    now: DateTime<Utc>,
) -> Result<ViewerGrant, TokenError> {
    let parts = parse_viewer_token(token).ok_or(TokenError::Invalid)?;
    if !key.verify(&signed_text(parts.signed), parts.signature) {
        return Err(TokenError::Invalid);
    }
    let expires_at =
        DateTime::from_timestamp_millis(parts.expires_ms).ok_or(TokenError::Invalid)?;
    if now >= expires_at {
        return Err(TokenError::Expired);
    }
    Ok(ViewerGrant {
        session_id: parts.session_id,
        user_id: parts.user_id,
        expires_at,
    })
}

/// A fresh one-time stream token.
pub(crate) fn new_stream_token() -> String {
    generate_secret(STREAM_TOKEN_PREFIX)
}

/// Domain separation: a viewer token's signature can never be mistaken for a key hash.
fn signed_text(body: &str) -> String {
    format!("streamspace viewer token\n{body}")
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn keys(master: &str) -> crate::keyring::Keys {
        crate::keyring::Keys::derive(&crate::keyring::MasterSecret::new(master), None)
    }

    fn hasher() -> Keyring<ViewerTokens> {
        keys("test secret").viewer
    }

    #[test]
    fn a_token_opens_its_session_until_it_expires() {
        let h = hasher();
        let now = Utc::now();
        let (session, user) = (Uuid::now_v7(), Uuid::now_v7());
        let token = issue_viewer(&h, session, user, now + TimeDelta::seconds(60));
        let grant = verify_viewer(&h, &token, now).ok();
        assert_eq!(
            grant.map(|g| (g.session_id, g.user_id)),
            Some((session, user))
        );
        assert_eq!(
            verify_viewer(&h, &token, now + TimeDelta::seconds(61)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_invalid() {
        let h = hasher();
        let now = Utc::now();
        let token = issue_viewer(
            &h,
            Uuid::now_v7(),
            Uuid::now_v7(),
            now + TimeDelta::seconds(60),
        );
        let other = keys("another secret").viewer;
        assert_eq!(verify_viewer(&other, &token, now), Err(TokenError::Invalid));
        let swapped = token.replacen(&token[4..8], "ffff", 1);
        assert_eq!(verify_viewer(&h, &swapped, now), Err(TokenError::Invalid));
        for bad in [
            "",
            "ssv_",
            "ssv_a.b",
            "sst_x",
            "ssv_....",
            &format!("{token}x"),
        ] {
            assert_eq!(
                verify_viewer(&h, bad, now),
                Err(TokenError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn stream_tokens_are_unique() {
        assert_ne!(new_stream_token(), new_stream_token());
        assert!(new_stream_token().starts_with(STREAM_TOKEN_PREFIX));
    }
}
