-- Issue 28: an API key may be bound to a project when it is created. Its reserves and charges
-- then count against that project's spend limits, and a body cannot name another project.
ALTER TABLE api_keys ADD COLUMN project_id TEXT;
