DROP INDEX audit_log_actor_idx;
ALTER TABLE audit_log DROP COLUMN client_addr;
ALTER TABLE audit_log DROP COLUMN actor_id;

CREATE TABLE api_keys_old (
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
INSERT INTO api_keys_old (id, kind, agent_id, prefix, key_hash, created_at, last_used_at,
                          revoked_at)
SELECT id, kind, agent_id, prefix, key_hash, created_at, last_used_at, revoked_at
FROM api_keys WHERE kind IN ('admin', 'agent');
DROP TABLE api_keys;
ALTER TABLE api_keys_old RENAME TO api_keys;
CREATE INDEX api_keys_agent_idx ON api_keys (agent_id);

DROP INDEX sessions_owner_id_created_idx;
ALTER TABLE sessions DROP COLUMN owner_id;
ALTER TABLE templates DROP COLUMN allowed_groups;

DROP TABLE group_members;
DROP TABLE groups;
DROP TABLE users;
