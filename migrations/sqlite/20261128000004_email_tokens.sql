-- Single-use tokens sent by email: account activation and password reset.

-- Stored only as SHA-256 digests (hex) of the token in the link. A token is spent by
-- `UPDATE ... SET used_at WHERE used_at IS NULL AND expires_at > now`, so of two
-- concurrent uses exactly one wins.
CREATE TABLE email_tokens (
    token_hash TEXT   PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT   NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX email_tokens_user ON email_tokens (user_id);
