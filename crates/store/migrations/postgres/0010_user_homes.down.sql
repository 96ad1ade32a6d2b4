-- Templates that asked for the user's home keep a volume that outlives their sessions.
DROP TABLE user_homes;
ALTER TABLE sessions DROP COLUMN user_home;
ALTER TABLE agents DROP COLUMN user_homes;
UPDATE templates SET persistent_home = 'retain' WHERE persistent_home = 'user';
ALTER TABLE templates DROP CONSTRAINT templates_persistent_home_check;
ALTER TABLE templates ADD CONSTRAINT templates_persistent_home_check
    CHECK (persistent_home IN ('none', 'delete', 'retain'));
