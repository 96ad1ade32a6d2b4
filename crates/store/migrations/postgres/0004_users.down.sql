DROP INDEX audit_log_actor_idx;
ALTER TABLE audit_log DROP COLUMN actor_id, DROP COLUMN client_addr;

DELETE FROM api_keys WHERE kind IN ('user', 'browser');
DROP INDEX api_keys_user_idx;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_owner_check;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_kind_check;
ALTER TABLE api_keys DROP COLUMN user_id, DROP COLUMN name, DROP COLUMN expires_at;
ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_kind_check CHECK (kind IN ('admin', 'agent')),
    ADD CONSTRAINT api_keys_check CHECK ((kind = 'agent') = (agent_id IS NOT NULL));

-- Owners become names again, as the older version keeps them.
UPDATE sessions SET owner = COALESCE((SELECT username FROM users WHERE id = owner_id), owner);
DROP INDEX sessions_owner_id_created_idx;
ALTER TABLE sessions DROP COLUMN owner_id;
ALTER TABLE templates DROP COLUMN allowed_groups;

DROP TABLE group_members;
DROP TABLE groups;
DROP TABLE users;
