//! Revoked share links, announced to every replica on [`CHANNEL`] so each closes at once the
//! viewers that came through the link (a watcher may sit on another replica than the owner who
//! revoked it). An announcement lost while Redis is away is made up for by each replica's own
//! check of its viewers' links (`crate::streams::close_unshared`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::link::RedisLink;

/// What travels on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
struct Unshared {
    share_id: Uuid,
    /// The close reason the viewers are given.
    reason: String,
}

/// The Redis channel every replica reads revoked share links from.
pub(crate) const CHANNEL: &str = "streamspace:shares:revoked";

/// Tells every replica (this one included) that `share_id` opens nothing any more.
pub(crate) async fn publish(link: &RedisLink, share_id: Uuid, reason: &str) {
    let message = Unshared {
        share_id,
        reason: reason.to_owned(),
    };
    let Ok(payload) = serde_json::to_string(&message) else {
        return;
    };
    let published = link
        .with_conn(|mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await;
    if let Err(e) = published {
        tracing::debug!(%share_id, error = %e, "announcing a revoked share link failed; each replica's viewer check closes its viewers");
    }
}

/// The link an announcement names and the reason to give its viewers; `None` if malformed.
pub(crate) fn parse(payload: &str) -> Option<(Uuid, String)> {
    match serde_json::from_str::<Unshared>(payload) {
        Ok(message) => Some((message.share_id, message.reason)),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed revoked-share message");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_link_and_the_reason() {
        let id = Uuid::now_v7();
        let message = serde_json::to_string(&Unshared {
            share_id: id,
            reason: "the share link was revoked".into(),
        })
        .expect("encodes");
        assert_eq!(
            parse(&message),
            Some((id, "the share link was revoked".to_owned()))
        );
        assert_eq!(parse(r#"{"reason":"no link"}"#), None);
        assert_eq!(parse("not json"), None);
    }
}
