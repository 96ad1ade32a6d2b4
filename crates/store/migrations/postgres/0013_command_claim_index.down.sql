CREATE INDEX agent_commands_agent_status_idx ON agent_commands (agent_id, status);
DROP INDEX agent_commands_claim_idx;
