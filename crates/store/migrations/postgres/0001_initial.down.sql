DROP TABLE audit_log;
DROP TABLE api_keys;
DROP TABLE agent_commands;
DROP TABLE sessions;
DROP TABLE templates;
DROP TABLE agents;
DROP TABLE settings;
DROP FUNCTION streamspace_set_updated_at();
