-- Templates that asked for the user's home keep a volume that outlives their sessions.
DROP TABLE user_homes;
ALTER TABLE sessions DROP COLUMN user_home;
ALTER TABLE agents DROP COLUMN user_homes;

ALTER TABLE templates ADD COLUMN persistent_home_old TEXT NOT NULL DEFAULT 'none'
    CHECK (persistent_home_old IN ('none', 'delete', 'retain'));
UPDATE templates SET persistent_home_old =
    CASE persistent_home WHEN 'user' THEN 'retain' ELSE persistent_home END;
ALTER TABLE templates DROP COLUMN persistent_home;
ALTER TABLE templates RENAME COLUMN persistent_home_old TO persistent_home;
