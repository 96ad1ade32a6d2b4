-- Users, groups and personal credentials (see the PostgreSQL migration of the same number for
-- the reasons). The bootstrap admin user has a fixed id so that existing sessions, the admin
-- token and audit rows are assigned to it here.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE CHECK (username = lower(username)),
    display_name   TEXT NOT NULL DEFAULT '',
    email          TEXT,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'user')),
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT,
    oidc_issuer    TEXT,
    oidc_subject   TEXT,
    max_sessions   INTEGER CHECK (max_sessions >= 0),
    max_cpu_millis INTEGER CHECK (max_cpu_millis >= 0),
    max_memory_mib INTEGER CHECK (max_memory_mib >= 0),
    last_login_at  TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    UNIQUE (oidc_issuer, oidc_subject)
);
CREATE TRIGGER users_set_updated_at
AFTER UPDATE OF username, display_name, email, role, disabled, password_hash, oidc_issuer,
    oidc_subject, max_sessions, max_cpu_millis, max_memory_mib, last_login_at
ON users
FOR EACH ROW
BEGIN
    UPDATE users SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;

INSERT INTO users (id, username, display_name, role)
VALUES ('00000000-0000-0000-0000-000000000001', 'admin', 'Administrator', 'admin');

CREATE TABLE groups (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    description    TEXT NOT NULL DEFAULT '',
    max_sessions   INTEGER CHECK (max_sessions >= 0),
    max_cpu_millis INTEGER CHECK (max_cpu_millis >= 0),
    max_memory_mib INTEGER CHECK (max_memory_mib >= 0),
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE TRIGGER groups_set_updated_at
AFTER UPDATE OF name, description, max_sessions, max_cpu_millis, max_memory_mib
ON groups
FOR EACH ROW
BEGIN
    UPDATE groups SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id;
END;

CREATE TABLE group_members (
    group_id   TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source     TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'oidc')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);

ALTER TABLE templates ADD COLUMN allowed_groups TEXT NOT NULL DEFAULT '[]';

ALTER TABLE sessions ADD COLUMN owner_id TEXT REFERENCES users (id) ON DELETE SET NULL;
UPDATE sessions SET owner_id = '00000000-0000-0000-0000-000000000001';
CREATE INDEX sessions_owner_id_created_idx ON sessions (owner_id, created_at);

-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.
CREATE TABLE api_keys_new (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('admin', 'agent', 'user', 'browser')),
    agent_id     TEXT,
    user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL DEFAULT '',
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT,
    CHECK ((kind = 'agent') = (agent_id IS NOT NULL) AND (kind = 'agent') = (user_id IS NULL))
);
INSERT INTO api_keys_new (id, kind, agent_id, user_id, name, prefix, key_hash, created_at,
                          last_used_at, revoked_at)
SELECT id, kind, agent_id,
       CASE kind WHEN 'admin' THEN '00000000-0000-0000-0000-000000000001' END,
       CASE kind WHEN 'admin' THEN 'bootstrap' ELSE '' END,
       prefix, key_hash, created_at, last_used_at, revoked_at
FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_new RENAME TO api_keys;
CREATE INDEX api_keys_agent_idx ON api_keys (agent_id);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, kind);

ALTER TABLE audit_log ADD COLUMN actor_id TEXT;
ALTER TABLE audit_log ADD COLUMN client_addr TEXT;
UPDATE audit_log SET actor_id = '00000000-0000-0000-0000-000000000001'
    WHERE actor LIKE 'admin:%';
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at);
