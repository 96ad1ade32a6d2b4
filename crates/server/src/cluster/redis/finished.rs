//! Finished commands announced to every replica on [`CHANNEL`], for the requests waiting for
//! them (see `crate::outcomes`). A terminal command never changes again, so the announced copy
//! is final; an announcement lost while Redis is down costs a waiter latency, never a wrong
//! answer.

use streamspace_proto::api::Command;

use super::link::RedisLink;

/// The Redis channel every replica reads finished commands from.
pub(crate) const CHANNEL: &str = "streamspace:commands:finished";

/// Publishes `command` (terminal) to every replica.
pub(crate) async fn publish(link: &RedisLink, command: &Command) {
    let payload = match serde_json::to_string(command) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::warn!(error = %e, "could not encode a finished command");
            return;
        }
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
        tracing::debug!(error = %e, "announcing a finished command failed; waiters re-read the database");
    }
}

/// A finished command published by some replica (possibly this one); `None` if it is not one.
pub(crate) fn parse(payload: &str) -> Option<Command> {
    match serde_json::from_str::<Command>(payload) {
        Ok(command) if command.status.is_terminal() => Some(command),
        Ok(command) => {
            tracing::warn!(
                command_id = %command.command_id,
                "ignoring an announced command that is not finished"
            );
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed finished-command message");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use streamspace_proto::api::{Action, CommandStatus};
    use uuid::Uuid;

    fn command(status: CommandStatus) -> String {
        json!({
            "id": 1,
            "command_id": Uuid::now_v7(),
            "agent_id": "a1",
            "session_id": null,
            "action": Action::Ping,
            "payload": {},
            "status": status,
            "result": {"pong": true},
            "error_message": null,
            "attempts": 1,
            "created_at": "2026-11-24T00:00:00Z",
            "updated_at": "2026-11-24T00:00:00Z",
            "sent_at": null,
            "acknowledged_at": null,
            "completed_at": null
        })
        .to_string()
    }

    #[test]
    fn only_finished_commands_are_taken() {
        let done = parse(&command(CommandStatus::Completed));
        assert_eq!(done.map(|c| c.status), Some(CommandStatus::Completed));
        assert!(
            parse(&command(CommandStatus::Sent)).is_none(),
            "an unfinished command"
        );
        assert!(parse("not json").is_none());
    }
}
