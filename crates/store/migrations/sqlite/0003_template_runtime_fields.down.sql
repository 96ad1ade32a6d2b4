ALTER TABLE templates DROP COLUMN idle_timeout_secs;
ALTER TABLE templates DROP COLUMN persistent_home;
ALTER TABLE templates DROP COLUMN memory_mib;
ALTER TABLE templates DROP COLUMN cpu_millis;
ALTER TABLE templates DROP COLUMN vnc_port;
ALTER TABLE templates DROP COLUMN image;
