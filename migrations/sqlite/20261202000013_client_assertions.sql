-- private_key_jwt client authentication (RFC 7523 §2.2), two kinds:
-- jwks: the client's own public JWK Set (JSON), set by the CLI, the admin API or an
--   OAuthClient's spec.jwks.
-- service_account ("namespace/name"), service_account_uid, assertion_audience: a
--   Kubernetes ServiceAccount whose projected token authenticates the client, written by
--   the operator from spec.serviceAccount; the token must carry that uid and audience.
ALTER TABLE oauth_clients ADD COLUMN jwks TEXT;
ALTER TABLE oauth_clients ADD COLUMN service_account TEXT;
ALTER TABLE oauth_clients ADD COLUMN service_account_uid TEXT;
ALTER TABLE oauth_clients ADD COLUMN assertion_audience TEXT;

-- Issuers whose tokens clients may authenticate with: today the cluster's ServiceAccount
-- issuer ("kubernetes"), its discovered issuer URL and its public keys (a JWK Set, JSON),
-- published by the operator from the API server. The service never talks to Kubernetes.
CREATE TABLE federated_issuers (
    name TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    jwks TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
