-- Templates gain what container runtimes need: image, VNC port, resource limits, a home
-- volume policy and an idle timeout. Every column has a constant default or is nullable, so
-- ADD COLUMN works in place and existing templates stay valid as process-runtime templates.
ALTER TABLE templates ADD COLUMN image TEXT;
ALTER TABLE templates ADD COLUMN vnc_port INTEGER NOT NULL DEFAULT 5901
    CHECK (vnc_port BETWEEN 1 AND 65535);
ALTER TABLE templates ADD COLUMN cpu_millis INTEGER CHECK (cpu_millis > 0);
ALTER TABLE templates ADD COLUMN memory_mib INTEGER CHECK (memory_mib > 0);
ALTER TABLE templates ADD COLUMN persistent_home TEXT NOT NULL DEFAULT 'none'
    CHECK (persistent_home IN ('none', 'delete', 'retain'));
ALTER TABLE templates ADD COLUMN idle_timeout_secs INTEGER CHECK (idle_timeout_secs > 0);
