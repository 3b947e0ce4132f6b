-- OAuth 2.0 clients. Written by the operator (OAuthClient resources, managed_by =
-- 'operator') or by the CLI / admin API (managed_by = 'api'); read by the service.
-- Secrets are stored only as SHA-256 digests (hex) of 256-bit random values. During a
-- secret rotation the previous digest stays valid until previous_secret_expires_at.
-- List columns are space-separated (RFC 6749 scope syntax; URIs cannot contain spaces).
CREATE TABLE oauth_clients (
    client_id                  TEXT    PRIMARY KEY,
    name                       TEXT    NOT NULL DEFAULT '',
    secret_hash                TEXT,
    previous_secret_hash       TEXT,
    previous_secret_expires_at BIGINT,
    public                     BOOLEAN NOT NULL DEFAULT FALSE,
    grant_types                TEXT    NOT NULL DEFAULT '',
    redirect_uris              TEXT    NOT NULL DEFAULT '',
    scopes                     TEXT    NOT NULL DEFAULT '',
    token_endpoint_auth_method TEXT    NOT NULL,
    first_party                BOOLEAN NOT NULL DEFAULT FALSE,
    access_token_ttl           BIGINT,
    refresh_token_ttl          BIGINT,
    audience                   TEXT,
    managed_by                 TEXT    NOT NULL CHECK (managed_by IN ('operator', 'api')),
    owner                      TEXT,
    created_at                 BIGINT  NOT NULL,
    updated_at                 BIGINT  NOT NULL
);
