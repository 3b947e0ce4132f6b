-- Latchkey's initial schema. Times are BIGINT Unix milliseconds and ids are TEXT so the
-- same queries run on PostgreSQL and SQLite; only this DDL is kept per backend.

-- People who sign in. `*_key` columns hold the normalised (lower-cased) form that
-- uniqueness and look-ups use; the display forms are kept as given.
CREATE TABLE users (
    id             TEXT    PRIMARY KEY,
    username       TEXT    NOT NULL,
    username_key   TEXT    NOT NULL UNIQUE,
    email          TEXT    NOT NULL,
    email_key      TEXT    NOT NULL UNIQUE,
    full_name      TEXT    NOT NULL DEFAULT '',
    password_hash  TEXT    NOT NULL,
    is_active      INTEGER NOT NULL DEFAULT 1, -- boolean: sqlx's Any driver has no SQLite BOOLEAN
    email_verified INTEGER NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

-- Opaque refresh tokens, stored only as SHA-256 digests (hex). Every login starts a
-- family; each refresh consumes one token (used_at) and adds its successor. Presenting a
-- consumed token again revokes the whole family (RFC 9700 §4.14.2).
CREATE TABLE refresh_tokens (
    token_hash TEXT   PRIMARY KEY,
    family_id  TEXT   NOT NULL,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT   NOT NULL,
    scope      TEXT   NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Public halves of the signing keys. The private halves never enter the database: they
-- live in the key directory (a mounted Secret in Kubernetes).
CREATE TABLE signing_keys (
    kid          TEXT   PRIMARY KEY,
    algorithm    TEXT   NOT NULL,
    public_jwk   TEXT   NOT NULL,
    state        TEXT   NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    created_at   BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at   BIGINT,
    expires_at   BIGINT
);
