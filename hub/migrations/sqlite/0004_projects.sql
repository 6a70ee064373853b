-- pconnect hub store, schema version 4: links and shares remember the project (`connect up`) that
-- created them, so a project's plan counts and touches only its own. NULL for hand-made ones.

ALTER TABLE links ADD COLUMN project TEXT;
ALTER TABLE shares ADD COLUMN project TEXT;
