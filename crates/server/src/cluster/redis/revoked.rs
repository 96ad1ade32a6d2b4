//! Credentials revoked anywhere, announced to every replica on [`CHANNEL`] so each forgets the
//! credentials it cached at once (a disabled or deleted user, a revoked token, a changed group).
//! The message carries no secret: why (for logs) and, when a user lost access altogether
//! (disabled, deleted), who — every replica then also closes that user's viewers. A lost message
//! costs at most the cache's time to live (`ServerConfig::credential_cache_ttl`) for tokens; a
//! viewer of a user whose revocation was missed stays open until it ends.
//!
//! A revoked agent key or a deleted agent travels here too: the replica holding the agent's
//! connection closes it (1008) on hearing it. A lost message is made up for by the holding
//! replica's check of the key on the agent's next heartbeat.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::link::RedisLink;
use crate::cluster::AgentRevoked;

/// What travels on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
struct Revoked {
    why: String,
    #[serde(default)]
    user: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<AgentRevoked>,
}

/// What a replica heard on [`CHANNEL`].
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Heard {
    /// The user who lost access altogether, if any.
    pub user: Option<Uuid>,
    /// Agent connections to close, if any.
    pub agent: Option<AgentRevoked>,
}

/// The Redis channel every replica reads revocations from.
pub(crate) const CHANNEL: &str = "streamspace:credentials:revoked";

/// Tells every replica (this one included) to forget its cached credentials.
pub(crate) async fn publish(link: &RedisLink, why: &str, user: Option<Uuid>) {
    let message = Revoked {
        why: why.to_owned(),
        user,
        agent: None,
    };
    send(link, &message).await;
}

/// Tells every replica (this one included) to close the agent connections `revoked` names.
pub(crate) async fn publish_agent(link: &RedisLink, revoked: &AgentRevoked) {
    let message = Revoked {
        why: revoked.reason().to_owned(),
        user: None,
        agent: Some(revoked.clone()),
    };
    send(link, &message).await;
}

async fn send(link: &RedisLink, message: &Revoked) {
    let Ok(why) = serde_json::to_string(message) else {
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

/// What a revocation message names (nothing for a malformed message, which still makes the
/// replica forget its cache).
pub(crate) fn parse(payload: &str) -> Heard {
    match serde_json::from_str::<Revoked>(payload) {
        Ok(message) => {
            tracing::debug!(why = %message.why, user = ?message.user, agent = ?message.agent,
                "credentials revoked on some replica");
            Heard {
                user: message.user,
                agent: message.agent,
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "a malformed revocation message: forgetting cached credentials anyway");
            Heard::default()
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
            agent: None,
        })
        .expect("encodes");
        assert_eq!(parse(&message).user, Some(user));
        assert_eq!(parse(r#"{"why":"token revoked"}"#), Heard::default());
        assert_eq!(parse("not json"), Heard::default());
        let key = Uuid::now_v7();
        let message = serde_json::to_string(&Revoked {
            why: "agent key revoked".into(),
            user: None,
            agent: Some(AgentRevoked::Key(key)),
        })
        .expect("encodes");
        assert_eq!(
            parse(&message),
            Heard {
                user: None,
                agent: Some(AgentRevoked::Key(key))
            }
        );
        assert_eq!(
            parse(r#"{"why":"agent deleted","agent":{"agent":"edge-1"}}"#).agent,
            Some(AgentRevoked::Agent("edge-1".into()))
        );
    }
}
