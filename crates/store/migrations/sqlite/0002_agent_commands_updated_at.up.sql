-- agent_commands grows an updated_at, maintained by a trigger. SQLite cannot add a NOT NULL
-- column with a non-constant default, so the table is rebuilt (the documented way to change a
-- table's shape) and existing rows get their created_at as a best estimate of their last change.

CREATE TABLE agent_commands_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id      TEXT NOT NULL UNIQUE,
    agent_id        TEXT NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    session_id      TEXT REFERENCES sessions (id) ON DELETE CASCADE,
    action          TEXT NOT NULL,
    payload         TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
                        ('pending', 'sent', 'acknowledged', 'completed', 'failed')),
    result          TEXT,
    error_message   TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    sent_at         TEXT,
    acknowledged_at TEXT,
    completed_at    TEXT,
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

INSERT INTO agent_commands_new
    (id, command_id, agent_id, session_id, action, payload, status, result, error_message,
     attempts, created_at, sent_at, acknowledged_at, completed_at, updated_at)
SELECT id, command_id, agent_id, session_id, action, payload, status, result, error_message,
       attempts, created_at, sent_at, acknowledged_at, completed_at, created_at
FROM agent_commands;

DROP TABLE agent_commands;
ALTER TABLE agent_commands_new RENAME TO agent_commands;

CREATE INDEX agent_commands_status_idx ON agent_commands (status, created_at);
CREATE INDEX agent_commands_agent_status_idx ON agent_commands (agent_id, status);
CREATE INDEX agent_commands_session_idx ON agent_commands (session_id);
CREATE INDEX agent_commands_updated_idx ON agent_commands (updated_at);

CREATE TRIGGER agent_commands_set_updated_at
AFTER UPDATE OF command_id, agent_id, session_id, action, payload, status, result,
                error_message, attempts, created_at, sent_at, acknowledged_at, completed_at
ON agent_commands
FOR EACH ROW
BEGIN
    UPDATE agent_commands SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE id = NEW.id;
END;
