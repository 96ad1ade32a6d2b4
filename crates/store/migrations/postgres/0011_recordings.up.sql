-- Recordings of viewings: one row per recorded viewing; the stream itself is in the recording
-- store under `storage_key`. `session_id` and `owner_id` (the session's owner, who may read it)
-- carry no foreign key: a recording outlives its session's row, which is purged by its own
-- retention, until recording retention deletes it.
CREATE TABLE recordings (
    id          UUID PRIMARY KEY,
    session_id  UUID NOT NULL,
    owner_id    UUID,
    viewer_id   UUID NOT NULL,
    viewer      TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    ended_at    TIMESTAMPTZ,
    bytes       BIGINT NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    storage_key TEXT NOT NULL UNIQUE,
    complete    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX recordings_session ON recordings (session_id, id);
CREATE INDEX recordings_age ON recordings ((COALESCE(ended_at, started_at)));
