DROP TABLE recovery_codes;
ALTER TABLE users
    DROP CONSTRAINT users_totp_check,
    DROP COLUMN totp_last_step,
    DROP COLUMN totp_enabled,
    DROP COLUMN totp_secret;
