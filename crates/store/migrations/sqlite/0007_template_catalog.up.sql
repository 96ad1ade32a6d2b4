-- Templates gain what the catalog shows: a category heading, search tags and an icon name (one
-- of a fixed set the web UI draws). All optional or defaulted: existing templates are listed
-- under "Other" with the default icon.
ALTER TABLE templates ADD COLUMN category TEXT;
ALTER TABLE templates ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE templates ADD COLUMN icon TEXT;
