-- The dispatcher's claim reads an agent's pending and sent commands in id order through one
-- index, by plain index scans, which mark the entries of finished commands dead as they meet
-- them (a bitmap scan never does, and visits every one of them again on every claim until
-- vacuum). It serves (agent_id, status) lookups as the index it replaces did.
CREATE INDEX agent_commands_claim_idx ON agent_commands (agent_id, status, id);
DROP INDEX agent_commands_agent_status_idx;
