-- agent_commands grows an updated_at, maintained by a trigger. Rows that existed before this
-- migration get their created_at as a best estimate of their last change.

ALTER TABLE agent_commands ADD COLUMN updated_at TIMESTAMPTZ;
UPDATE agent_commands SET updated_at = created_at;
ALTER TABLE agent_commands
    ALTER COLUMN updated_at SET DEFAULT clock_timestamp(),
    ALTER COLUMN updated_at SET NOT NULL;
CREATE INDEX agent_commands_updated_idx ON agent_commands (updated_at);

CREATE FUNCTION agent_commands_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TRIGGER agent_commands_set_updated_at BEFORE UPDATE ON agent_commands
    FOR EACH ROW EXECUTE FUNCTION agent_commands_set_updated_at();
