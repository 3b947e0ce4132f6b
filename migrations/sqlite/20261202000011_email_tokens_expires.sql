-- The pruner walks expires_at (store::prune).
CREATE INDEX IF NOT EXISTS email_tokens_expires ON email_tokens (expires_at);
