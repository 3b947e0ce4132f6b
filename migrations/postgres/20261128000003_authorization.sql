-- Authorization codes (RFC 6749 §4.1) and browser sessions of the login page.

-- Codes are stored only as SHA-256 digests, are single use (used_at) and short-lived.
-- family_id / access_jti name what was issued from the code, so a replayed code can
-- revoke it (RFC 6749 §4.1.2, RFC 9700 §4.5).
CREATE TABLE authorization_codes (
    code_hash      TEXT   PRIMARY KEY,
    client_id      TEXT   NOT NULL,
    user_id        TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri   TEXT   NOT NULL,
    redirect_given BIGINT NOT NULL,
    scope          TEXT   NOT NULL,
    code_challenge TEXT,
    nonce          TEXT,
    auth_time      BIGINT NOT NULL,
    family_id      TEXT   NOT NULL,
    access_jti     TEXT,
    access_exp     BIGINT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);

-- Signed-in browsers, by the SHA-256 digest of the session cookie's value.
CREATE TABLE browser_sessions (
    id_hash    TEXT   PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
