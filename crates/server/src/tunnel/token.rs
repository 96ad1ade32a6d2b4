//! The two kinds of tunnel token.
//!
//! - **Viewer tokens** (`ssv_…`) open `GET /api/v1/sessions/{id}/vnc` from a browser. They are
//!   signed, not stored: `ssv_<session>.<user>.<expires ms>.<grant>.<nonce>.<HMAC>` with the
//!   viewer-token key every replica derives from the master secret (`crate::keyring`), so any
//!   replica can check a token another one issued. The grant says why the viewer may watch and
//!   what it may do — `o` for the session's own user (or an operator), `v-<share>` or
//!   `c-<share>` for a view-only or controlling share link — so whichever replica splices the
//!   stream enforces the mode (`rfb_filter`). They are
//!   short-lived and name one session and the user they were issued to; whether that session is
//!   still running and that user still enabled is checked in the database on every use, so a
//!   token is worthless once its session has ended or its user lost access.
//! - **Stream tokens** (`sst_…`) authenticate one agent data connection. They are random, live
//!   only in the memory of the replica holding the viewer, and are taken out on first use.

use chrono::{DateTime, Utc};
use streamspace_proto::api::ShareMode;
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
    pub access: Access,
    pub expires_at: DateTime<Utc>,
}

/// Why a viewer may watch, and so what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The session's owner, or an operator: full control.
    Owner,
    /// Through a share link, in its mode.
    Share { id: Uuid, mode: ShareMode },
}

impl Access {
    fn encode(self) -> String {
        match self {
            Self::Owner => "o".to_owned(),
            Self::Share { id, mode } => {
                let m = match mode {
                    ShareMode::ViewOnly => 'v',
                    ShareMode::Control => 'c',
                };
                format!("{m}-{}", id.simple())
            }
        }
    }

    fn decode(grant: &str) -> Option<Self> {
        if grant == "o" {
            return Some(Self::Owner);
        }
        let (mode, id) = grant.split_once('-')?;
        let mode = match mode {
            "v" => ShareMode::ViewOnly,
            "c" => ShareMode::Control,
            _ => return None,
        };
        Some(Self::Share {
            id: Uuid::try_parse(id).ok()?,
            mode,
        })
    }

    /// The share link, if the viewer came through one.
    pub fn share_id(self) -> Option<Uuid> {
        match self {
            Self::Owner => None,
            Self::Share { id, .. } => Some(id),
        }
    }

    pub fn mode(self) -> ShareMode {
        match self {
            Self::Owner => ShareMode::Control,
            Self::Share { mode, .. } => mode,
        }
    }
}

/// Why a viewer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the token is not a valid viewer token")]
    Invalid,
    #[error("the token has expired; ask for a new one")]
    Expired,
}

/// Issues a viewer token for `session_id` to the user `user_id` with `access`, valid until
/// `expires_at`.
pub(crate) fn issue_viewer(
    key: &Keyring<ViewerTokens>,
    session_id: Uuid,
    user_id: Uuid,
    access: Access,
    expires_at: DateTime<Utc>,
) -> String {
    let nonce = hex::encode(rand::random::<[u8; 12]>());
    let body = viewer_token_signed_part(
        session_id,
        user_id,
        expires_at.timestamp_millis(),
        &access.encode(),
        &nonce,
    );
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
    let access = Access::decode(parts.grant).ok_or(TokenError::Invalid)?;
    Ok(ViewerGrant {
        session_id: parts.session_id,
        user_id: parts.user_id,
        access,
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
        let token = issue_viewer(
            &h,
            session,
            user,
            Access::Owner,
            now + TimeDelta::seconds(60),
        );
        let grant = verify_viewer(&h, &token, now).ok();
        assert_eq!(
            grant.map(|g| (g.session_id, g.user_id, g.access)),
            Some((session, user, Access::Owner))
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
            Access::Owner,
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
    fn a_token_carries_its_share_and_mode() {
        let h = hasher();
        let now = Utc::now();
        for mode in [ShareMode::ViewOnly, ShareMode::Control] {
            let access = Access::Share {
                id: Uuid::now_v7(),
                mode,
            };
            let token = issue_viewer(
                &h,
                Uuid::now_v7(),
                Uuid::now_v7(),
                access,
                now + TimeDelta::seconds(60),
            );
            let grant = verify_viewer(&h, &token, now).map(|g| g.access);
            assert_eq!(grant, Ok(access));
            // Turning a view-only grant into a controlling one breaks the signature.
            let forged = token.replace(".v-", ".c-");
            if forged != token {
                assert_eq!(verify_viewer(&h, &forged, now), Err(TokenError::Invalid));
            }
        }
        for bad in ["", "x", "v-", "v-zz", "q-0190c1d2e3f4a5b6c7d8e9f0a1b2c3d4"] {
            assert_eq!(Access::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stream_tokens_are_unique() {
        assert_ne!(new_stream_token(), new_stream_token());
        assert!(new_stream_token().starts_with(STREAM_TOKEN_PREFIX));
    }
}
