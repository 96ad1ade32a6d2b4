-- Optional two-step sign-in (RFC 6238 one-time codes) for local accounts.
--
-- `totp_secret` is the shared secret, stored as-is for now: it is a secret at rest, as
-- sensitive as a password would be in clear, so protect the database and its backups
-- accordingly. It is set when enrolment starts and `totp_enabled` turns true only once a
-- code made from it has been confirmed. `totp_last_step` is the time step of the last code
-- accepted, so that a code is never accepted twice.
ALTER TABLE users
    ADD COLUMN totp_secret TEXT,
    ADD COLUMN totp_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN totp_last_step BIGINT,
    ADD CONSTRAINT users_totp_check CHECK (NOT totp_enabled OR totp_secret IS NOT NULL);

-- One-time recovery codes, stored as the server's keyed hash, each usable once.
CREATE TABLE recovery_codes (
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);
