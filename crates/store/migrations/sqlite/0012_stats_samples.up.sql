-- One row per minute of the whole system, for the operators' overview: sessions by state at
-- the minute's end, agents online, commands created during the minute and commands that failed
-- during it. `at` is the minute's end in seconds since the Unix epoch; every replica tries to
-- write each minute and the first one wins. Rows older than the overview's window are deleted.
CREATE TABLE stats_samples (
    at                  INTEGER PRIMARY KEY,
    sessions_pending    INTEGER NOT NULL,
    sessions_starting   INTEGER NOT NULL,
    sessions_running    INTEGER NOT NULL,
    sessions_hibernated INTEGER NOT NULL,
    sessions_failed     INTEGER NOT NULL,
    agents_online       INTEGER NOT NULL,
    commands_created    INTEGER NOT NULL,
    commands_failed     INTEGER NOT NULL
);
