ALTER TABLE templates
    DROP COLUMN icon,
    DROP COLUMN tags,
    DROP COLUMN category;
