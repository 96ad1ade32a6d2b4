ALTER TABLE templates
    DROP COLUMN image,
    DROP COLUMN vnc_port,
    DROP COLUMN cpu_millis,
    DROP COLUMN memory_mib,
    DROP COLUMN persistent_home,
    DROP COLUMN idle_timeout_secs;
