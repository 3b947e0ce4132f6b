-- no-transaction
-- The pruner walks expires_at (store::prune). Built CONCURRENTLY, one index per
-- migration (it cannot run in a transaction), so a large existing table keeps taking
-- writes while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS browser_sessions_expires ON browser_sessions (expires_at);
