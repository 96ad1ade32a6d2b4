-- A home that follows the user (`persistent_home: user`): one home per user, made by the agent
-- that ran the user's first such session and living there (see ARCHITECTURE.md, "User homes").
--
-- `agents.user_homes`: the agent announced in `register` that its runtime keeps user homes;
-- only such agents get these sessions (an older agent could not even read the template).
-- `sessions.user_home`: the session mounts its owner's home (counted when one user's second
-- session would share a ReadWriteOnce home).
-- `user_homes`: which agent holds each user's home. No foreign key to `users`: when a user is
-- deleted and the operator keeps the home, the row stays, marked `orphaned_at`, so an operator
-- can still find and remove it. None to `agents` either: a deleted agent's homes stay listed.

ALTER TABLE templates DROP CONSTRAINT templates_persistent_home_check;
ALTER TABLE templates ADD CONSTRAINT templates_persistent_home_check
    CHECK (persistent_home IN ('none', 'delete', 'retain', 'user'));

ALTER TABLE agents ADD COLUMN user_homes BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN user_home BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE user_homes (
    user_id     UUID PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    orphaned_at TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX user_homes_agent_idx ON user_homes (agent_id);
CREATE TRIGGER user_homes_set_updated_at BEFORE UPDATE ON user_homes
    FOR EACH ROW EXECUTE FUNCTION streamspace_set_updated_at();
