-- Share links: a session's owner lets other signed-in users watch it (view_only) or control it
-- until `expires_at`, optionally only named users (by username) and members of named groups.
-- A revoked link keeps its row (revoked_at set), for the record; links go with their session.
CREATE TABLE session_shares (
    id             UUID PRIMARY KEY,
    session_id     UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_by     UUID REFERENCES users (id) ON DELETE SET NULL,
    mode           TEXT NOT NULL CHECK (mode IN ('view_only', 'control')),
    allowed_users  JSONB NOT NULL DEFAULT '[]'::jsonb,
    allowed_groups JSONB NOT NULL DEFAULT '[]'::jsonb,
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX session_shares_session_idx ON session_shares (session_id, created_at);
