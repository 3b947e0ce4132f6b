-- The pruner walks expires_at (store::prune).
CREATE INDEX IF NOT EXISTS authorization_codes_expires ON authorization_codes (expires_at);
