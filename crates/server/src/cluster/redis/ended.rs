//! Sessions that left `running`, announced to every replica on [`CHANNEL`] so each closes the
//! viewers of that session it holds (a viewer may sit on another replica than the agent that
//! reported the change). An announcement lost while Redis is away is made up for by each
//! replica's own check of its viewers' sessions (`crate::streams::close_ended`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::link::RedisLink;

/// What travels on [`CHANNEL`].
#[derive(Debug, Serialize, Deserialize)]
struct Ended {
    session_id: Uuid,
    /// The close reason the viewers are given.
    reason: String,
}

/// The Redis channel every replica reads ended sessions from.
pub(crate) const CHANNEL: &str = "streamspace:sessions:ended";

/// Tells every replica (this one included) that `session_id` is no longer running.
pub(crate) async fn publish(link: &RedisLink, session_id: Uuid, reason: &str) {
    let message = Ended {
        session_id,
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
        tracing::debug!(%session_id, error = %e, "announcing an ended session failed; each replica's viewer check closes its viewers");
    }
}

/// The session an announcement names and the reason to give its viewers; `None` if malformed.
pub(crate) fn parse(payload: &str) -> Option<(Uuid, String)> {
    match serde_json::from_str::<Ended>(payload) {
        Ok(message) => Some((message.session_id, message.reason)),
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed ended-session message");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_session_and_the_reason() {
        let id = Uuid::now_v7();
        let message = serde_json::to_string(&Ended {
            session_id: id,
            reason: "the session is hibernated".into(),
        })
        .expect("encodes");
        assert_eq!(
            parse(&message),
            Some((id, "the session is hibernated".to_owned()))
        );
        assert_eq!(parse(r#"{"reason":"no session"}"#), None);
        assert_eq!(parse("not json"), None);
    }
}
