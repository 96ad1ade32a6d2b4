-- The control plane's tables. Every timestamp is TEXT in one format, UTC with milliseconds
-- ('%Y-%m-%d %H:%M:%f', e.g. 2026-01-02 03:04:05.678), so that comparing two of them as strings
-- compares them as times. Ids are hyphenated UUID text. `updated_at` is maintained by the
-- triggers below, never by application code; each trigger fires only when some other column is
-- assigned, so its own UPDATE of updated_at can never set it off again.

-- Server-wide values such as the secret that keys API key hashes.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE agents (
    agent_id          TEXT PRIMARY KEY,
    platform          TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
    labels            TEXT NOT NULL DEFAULT '{}',
    max_sessions      INTEGER NOT NULL DEFAULT 0 CHECK (max_sessions >= 0),
    epoch             INTEGER NOT NULL DEFAULT 0,
    replica_id        TEXT,
    version           TEXT,
    last_heartbeat_at TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX agents_status_heartbeat_idx ON agents (status, last_heartbeat_at);
CREATE TRIGGER agents_set_updated_at
AFTER UPDATE OF agent_id, platform, status, labels, max_sessions, epoch, replica_id, version,
                last_heartbeat_at, created_at ON agents
FOR EACH ROW
BEGIN
    UPDATE agents SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE agent_id = NEW.agent_id;
END;

CREATE TABLE templates (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    command     TEXT NOT NULL,
    env         TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE TRIGGER templates_set_updated_at
AFTER UPDATE OF name, description, command, env, created_at ON templates
FOR EACH ROW
BEGIN
    UPDATE templates SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE name = NEW.name;
END;

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    template      TEXT NOT NULL,
    agent_id      TEXT REFERENCES agents (agent_id) ON DELETE SET NULL,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                      ('pending', 'starting', 'running', 'hibernated', 'terminated', 'failed')),
    vnc_address   TEXT,
    error_message TEXT,
    owner         TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX sessions_agent_state_idx ON sessions (agent_id, state);
CREATE INDEX sessions_owner_created_idx ON sessions (owner, created_at);
CREATE INDEX sessions_created_idx ON sessions (created_at);
CREATE TRIGGER sessions_set_updated_at
AFTER UPDATE OF id, template, agent_id, state, vnc_address, error_message, owner, created_at
ON sessions
FOR EACH ROW
BEGIN
    UPDATE sessions SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;

-- No updated_at yet: migration 0002 adds it (with a backfill), as a live schema would grow.
CREATE TABLE agent_commands (
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
    completed_at    TEXT
);
CREATE INDEX agent_commands_status_idx ON agent_commands (status, created_at);
CREATE INDEX agent_commands_agent_status_idx ON agent_commands (agent_id, status);
CREATE INDEX agent_commands_session_idx ON agent_commands (session_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('admin', 'agent')),
    agent_id     TEXT,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    last_used_at TEXT,
    revoked_at   TEXT,
    CHECK ((kind = 'agent') = (agent_id IS NOT NULL))
);
CREATE INDEX api_keys_agent_idx ON api_keys (agent_id);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
