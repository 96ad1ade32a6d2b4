-- User homes (see the PostgreSQL migration of the same number for the reasons). SQLite cannot
-- change a column's CHECK constraint, so `persistent_home` is replaced by a new column with the
-- wider one (rather than rebuilding the table, which would have to name every other column).

ALTER TABLE templates ADD COLUMN persistent_home_new TEXT NOT NULL DEFAULT 'none'
    CHECK (persistent_home_new IN ('none', 'delete', 'retain', 'user'));
UPDATE templates SET persistent_home_new = persistent_home;
ALTER TABLE templates DROP COLUMN persistent_home;
ALTER TABLE templates RENAME COLUMN persistent_home_new TO persistent_home;

ALTER TABLE agents ADD COLUMN user_homes BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN user_home BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE user_homes (
    user_id     TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    orphaned_at TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX user_homes_agent_idx ON user_homes (agent_id);
CREATE TRIGGER user_homes_set_updated_at
AFTER UPDATE OF user_id, agent_id, orphaned_at ON user_homes
FOR EACH ROW
BEGIN
    UPDATE user_homes SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE user_id = NEW.user_id;
END;
