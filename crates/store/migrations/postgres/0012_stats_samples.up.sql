-- One row per minute of the whole system, for the operators' overview: sessions by state at
-- the minute's end, agents online, commands created during the minute and commands that failed
-- during it. `at` is the minute's end in seconds since the Unix epoch; every replica tries to
-- write each minute and the first one wins. Rows older than the overview's window are deleted.
CREATE TABLE stats_samples (
    at                  BIGINT PRIMARY KEY,
    sessions_pending    BIGINT NOT NULL,
    sessions_starting   BIGINT NOT NULL,
    sessions_running    BIGINT NOT NULL,
    sessions_hibernated BIGINT NOT NULL,
    sessions_failed     BIGINT NOT NULL,
    agents_online       BIGINT NOT NULL,
    commands_created    BIGINT NOT NULL,
    commands_failed     BIGINT NOT NULL
);
