//! Credentials revoked anywhere, announced to every replica on [`CHANNEL`] so each forgets the
//! credentials it cached at once (a disabled or deleted user, a revoked token, a changed group).
//! The message carries no secret: why (for logs) and, when a user lost access altogether
//! (disabled, deleted), who — every replica then also closes that user's viewers. A lost message
//! costs at most the cache's time to live (`ServerConfig::credential_cache_ttl`) for tokens; a
//! viewer of a user whose revocation was missed stays open until it ends.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::link::RedisLink;

/// What travels on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
struct Revoked {
    why: String,
    #[serde(default)]
    user: Option<Uuid>,
}

/// The Redis channel every replica reads revocations from.
pub(crate) const CHANNEL: &str = "streamspace:credentials:revoked";

/// Tells every replica (this one included) to forget its cached credentials.
pub(crate) async fn publish(link: &RedisLink, why: &str, user: Option<Uuid>) {
    let message = Revoked {
        why: why.to_owned(),
        user,
    };
    let Ok(why) = serde_json::to_string(&message) else {
        return;
    };
    let published = link
        .with_conn(|mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(why)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await;
    if let Err(e) = published {
        tracing::warn!(error = %e, "announcing a revocation failed; other replicas forget within the cache's lifetime");
    }
}

/// The user a revocation message names, if any (`None` also for a malformed message, which
/// still makes the replica forget its cache).
pub(crate) fn parse(payload: &str) -> Option<Uuid> {
    match serde_json::from_str::<Revoked>(payload) {
        Ok(message) => {
            tracing::debug!(why = %message.why, user = ?message.user, "credentials revoked on some replica");
            message.user
        }
        Err(e) => {
            tracing::warn!(error = %e, "a malformed revocation message: forgetting cached credentials anyway");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_user_or_none() {
        let user = Uuid::now_v7();
        let message = serde_json::to_string(&Revoked {
            why: "user deleted".into(),
            user: Some(user),
        })
        .expect("encodes");
        assert_eq!(parse(&message), Some(user));
        assert_eq!(parse(r#"{"why":"token revoked"}"#), None);
        assert_eq!(parse("not json"), None);
    }
}
