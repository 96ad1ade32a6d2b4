-- Users, groups and personal credentials. Every session gets an owner (a user id), API keys
-- may belong to a user (personal tokens, browser sign-in sessions), templates say which groups
-- may launch them, and audit rows name the acting user and the client's address.
--
-- The bootstrap admin user exists from this migration on, with a fixed id, so that what an
-- older version recorded — sessions owned by "admin", the admin token, audit rows — is
-- assigned to it here, in the schema change itself.

CREATE TABLE users (
    id             UUID PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE CHECK (username = lower(username)),
    display_name   TEXT NOT NULL DEFAULT '',
    email          TEXT,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'user')),
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash  TEXT,
    oidc_issuer    TEXT,
    oidc_subject   TEXT,
    max_sessions   INTEGER CHECK (max_sessions >= 0),
    max_cpu_millis BIGINT CHECK (max_cpu_millis >= 0),
    max_memory_mib BIGINT CHECK (max_memory_mib >= 0),
    last_login_at  TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (oidc_issuer, oidc_subject)
);
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION streamspace_set_updated_at();

INSERT INTO users (id, username, display_name, role)
VALUES ('00000000-0000-0000-0000-000000000001', 'admin', 'Administrator', 'admin');

CREATE TABLE groups (
    id             UUID PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    description    TEXT NOT NULL DEFAULT '',
    max_sessions   INTEGER CHECK (max_sessions >= 0),
    max_cpu_millis BIGINT CHECK (max_cpu_millis >= 0),
    max_memory_mib BIGINT CHECK (max_memory_mib >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER groups_set_updated_at BEFORE UPDATE ON groups
    FOR EACH ROW EXECUTE FUNCTION streamspace_set_updated_at();

-- `source` tells memberships a provider manages (replaced at each sign-in) from local ones.
CREATE TABLE group_members (
    group_id   UUID NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source     TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'oidc')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);

ALTER TABLE templates ADD COLUMN allowed_groups JSONB NOT NULL DEFAULT '[]'::jsonb;

-- Ended sessions of a deleted user stay, ownerless, for the record.
ALTER TABLE sessions ADD COLUMN owner_id UUID REFERENCES users (id) ON DELETE SET NULL;
UPDATE sessions SET owner_id = '00000000-0000-0000-0000-000000000001';
CREATE INDEX sessions_owner_id_created_idx ON sessions (owner_id, created_at);

-- Kinds: `admin` (the bootstrap admin token), `agent`, `user` (a personal API token),
-- `browser` (a signed-in browser's session cookie). Every kind but `agent` belongs to a user.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_kind_check;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_check;
ALTER TABLE api_keys
    ADD COLUMN user_id UUID REFERENCES users (id) ON DELETE CASCADE,
    ADD COLUMN name TEXT NOT NULL DEFAULT '',
    ADD COLUMN expires_at TIMESTAMPTZ;
UPDATE api_keys SET user_id = '00000000-0000-0000-0000-000000000001', name = 'bootstrap'
    WHERE kind = 'admin';
ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_kind_check CHECK (kind IN ('admin', 'agent', 'user', 'browser')),
    ADD CONSTRAINT api_keys_owner_check CHECK (
        (kind = 'agent') = (agent_id IS NOT NULL) AND (kind = 'agent') = (user_id IS NULL));
CREATE INDEX api_keys_user_idx ON api_keys (user_id, kind);

ALTER TABLE audit_log
    ADD COLUMN actor_id UUID,
    ADD COLUMN client_addr TEXT;
UPDATE audit_log SET actor_id = '00000000-0000-0000-0000-000000000001'
    WHERE actor LIKE 'admin:%';
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, at);
