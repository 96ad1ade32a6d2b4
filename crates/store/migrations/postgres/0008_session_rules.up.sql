-- Session rules (clipboard, file transfer, recording) on templates and groups, and the copy of
-- its template's rules each session keeps from its creation. An empty object says nothing: the
-- server's defaults apply, so existing templates, groups and sessions keep today's behaviour.
ALTER TABLE templates ADD COLUMN rules JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE groups ADD COLUMN rules JSONB NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE sessions ADD COLUMN rules JSONB NOT NULL DEFAULT '{}'::jsonb;
