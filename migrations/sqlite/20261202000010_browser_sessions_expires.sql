-- The pruner walks expires_at (store::prune).
CREATE INDEX IF NOT EXISTS browser_sessions_expires ON browser_sessions (expires_at);
