DROP TRIGGER agent_commands_set_updated_at;
DROP INDEX agent_commands_updated_idx;
ALTER TABLE agent_commands DROP COLUMN updated_at;
