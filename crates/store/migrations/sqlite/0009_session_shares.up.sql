-- Share links: a session's owner lets other signed-in users watch it (view_only) or control it
-- until `expires_at`, optionally only named users (by username) and members of named groups.
-- A revoked link keeps its row (revoked_at set), for the record; links go with their session.
CREATE TABLE session_shares (
    id             TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_by     TEXT REFERENCES users (id) ON DELETE SET NULL,
    mode           TEXT NOT NULL CHECK (mode IN ('view_only', 'control')),
    allowed_users  TEXT NOT NULL DEFAULT '[]',
    allowed_groups TEXT NOT NULL DEFAULT '[]',
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX session_shares_session_idx ON session_shares (session_id, created_at);
