//! Announcements that make every replica close some of the viewers it holds: a session that
//! left `running` ([`ENDED`]; a viewer may sit on another replica than the agent that reported
//! the change) and a revoked share link ([`UNSHARED`]; a watcher may sit on another replica than
//! the owner who revoked it). An announcement lost while Redis is away is made up for by each
//! replica's own check of its viewers (`crate::streams::close_ended` and `close_unshared`).

use uuid::Uuid;

use super::link::RedisLink;

/// One kind of announcement: a JSON object `{"<id_field>": UUID, "reason": TEXT}` on `channel`,
/// where `reason` is the close reason the viewers are given.
pub(crate) struct Announcement {
    pub channel: &'static str,
    id_field: &'static str,
    /// What it announces, for the log.
    what: &'static str,
}

/// Sessions that are no longer running.
pub(crate) const ENDED: Announcement = Announcement {
    channel: "streamspace:sessions:ended",
    id_field: "session_id",
    what: "an ended session",
};

/// Share links that open nothing any more.
pub(crate) const UNSHARED: Announcement = Announcement {
    channel: "streamspace:shares:revoked",
    id_field: "share_id",
    what: "a revoked share link",
};

impl Announcement {
    /// Tells every replica (this one included) about `id`.
    pub(crate) async fn publish(&self, link: &RedisLink, id: Uuid, reason: &str) {
        let payload = serde_json::json!({ self.id_field: id, "reason": reason }).to_string();
        let channel = self.channel;
        let published = link
            .with_conn(|mut conn| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
        if let Err(e) = published {
            tracing::debug!(%id, error = %e, what = self.what, "announcing failed; each replica's viewer check closes its viewers");
        }
    }

    /// The id an announcement names and the reason to give its viewers; `None` if malformed.
    pub(crate) fn parse(&self, payload: &str) -> Option<(Uuid, String)> {
        let parsed = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .and_then(|m| {
                let id = m.get(self.id_field)?.as_str()?.parse::<Uuid>().ok()?;
                Some((id, m.get("reason")?.as_str()?.to_owned()))
            });
        if parsed.is_none() {
            tracing::warn!(what = self.what, "ignoring a malformed announcement");
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_session_or_link_and_the_reason() {
        for (kind, field) in [(&ENDED, "session_id"), (&UNSHARED, "share_id")] {
            let id = Uuid::now_v7();
            let message = serde_json::json!({ field: id, "reason": "gone" }).to_string();
            assert_eq!(kind.parse(&message), Some((id, "gone".to_owned())));
            assert_eq!(kind.parse(r#"{"reason":"no id"}"#), None);
            assert_eq!(kind.parse("not json"), None);
        }
        let ended = serde_json::json!({ "session_id": Uuid::now_v7(), "reason": "x" }).to_string();
        assert_eq!(
            UNSHARED.parse(&ended),
            None,
            "each kind reads its own field"
        );
    }
}
