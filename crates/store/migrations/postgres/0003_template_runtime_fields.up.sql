-- Templates gain what container runtimes need: image, VNC port, resource limits, a home
-- volume policy and an idle timeout. Every column has a default or is nullable, so existing
-- templates stay valid as process-runtime templates.
ALTER TABLE templates
    ADD COLUMN image             TEXT,
    ADD COLUMN vnc_port          INTEGER NOT NULL DEFAULT 5901 CHECK (vnc_port BETWEEN 1 AND 65535),
    ADD COLUMN cpu_millis        BIGINT CHECK (cpu_millis > 0),
    ADD COLUMN memory_mib        BIGINT CHECK (memory_mib > 0),
    ADD COLUMN persistent_home   TEXT NOT NULL DEFAULT 'none'
                                 CHECK (persistent_home IN ('none', 'delete', 'retain')),
    ADD COLUMN idle_timeout_secs BIGINT CHECK (idle_timeout_secs > 0);
