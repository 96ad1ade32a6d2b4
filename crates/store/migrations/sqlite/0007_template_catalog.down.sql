ALTER TABLE templates DROP COLUMN icon;
ALTER TABLE templates DROP COLUMN tags;
ALTER TABLE templates DROP COLUMN category;
