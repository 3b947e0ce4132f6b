-- no-transaction
-- The pruner walks expires_at (store::prune). Built CONCURRENTLY, one index per
-- migration (it cannot run in a transaction), so a large existing table keeps taking
-- writes while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS authorization_codes_expires ON authorization_codes (expires_at);
