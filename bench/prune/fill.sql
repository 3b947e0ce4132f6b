-- The backlog of bench/prune.sh, in one transaction: refresh-token families as real
-- sessions leave them, stored the way the service stores them.
--
-- psql variables: now (Unix ms), client (client_id), users, dead_families,
-- live_families, per_family, ttl (refresh-token lifetime, ms), sessions and
-- sessions_file (that many current tokens of live sessions, for the refresh load, are
-- written there, one a line).
--
-- A family is a sign-in: `per_family` tokens, each created when the one before it was
-- used (a refresh every `gap`), each living `ttl` from its creation; the last one is the
-- current token (used_at NULL). A token's value is 32 bytes (SHA-256 of random() and the
-- clock) in base64url, 43 characters like the service's, and only its SHA-256 digest
-- (hex) is stored.
--
-- Dead families ended (last token expired) between 1 minute and 30 days ago: every token
-- of theirs is what store::prune deletes. 5% were revoked (logout) before they expired.
-- Live families were last refreshed in the past 13 days, so their current token lives at
-- least a day more; 2% were revoked and wait for their expiry. One in five is a long
-- session refreshed every 3 to 7 days: its first tokens have expired, yet stay (reuse
-- detection needs them while the family lives), so the pruner must walk past them.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO users (id, username, username_key, email, email_key, full_name, password_hash,
                   is_active, email_verified, created_at, updated_at)
SELECT md5('bench-user-' || n)::uuid::text, 'user' || n, 'user' || n,
       'user' || n || '@bench.example', 'user' || n || '@bench.example', '',
       '$argon2id$v=19$m=19456,t=2,p=1$YmVuY2hiZW5jaA$bm90IGEgcmVhbCBwYXNzd29yZCBoYXNo',
       TRUE, TRUE, :now - 90 * 86400000::bigint, :now - 90 * 86400000::bigint
FROM generate_series(1, :users) n;

CREATE TEMPORARY TABLE bench_family ON COMMIT DROP AS
SELECT f,
       f <= :dead_families AS dead,
       gen_random_uuid()::text AS family_id,
       md5('bench-user-' || (1 + floor(random() * :users))::int)::uuid::text AS user_id,
       random() AS r_end, random() AS r_kind, random() AS r_gap, random() AS r_revoke
FROM generate_series(1, :dead_families + :live_families) f;

CREATE TEMPORARY TABLE bench_token ON COMMIT DROP AS
WITH shaped AS (
    SELECT b.*,
           CASE WHEN dead THEN :now - 60000 - (r_end * 30 * 86400000)::bigint - :ttl
                ELSE :now - (r_end * 13 * 86400000)::bigint END AS last_created,
           CASE WHEN NOT dead AND r_kind < 0.2 THEN (3 * 86400000 + r_gap * 4 * 86400000)::bigint
                ELSE (900000 + r_gap * 6 * 3600000)::bigint END AS gap,
           CASE WHEN dead THEN r_kind < 0.05 ELSE r_kind >= 0.2 AND r_kind < 0.22 END AS revoked
    FROM bench_family b
), token AS (
    SELECT s.*, i,
           rtrim(translate(encode(sha256((random()::text || clock_timestamp()::text || f || '.' || i)::bytea),
                                  'base64'), '+/', '-_'), '=') AS value,
           s.last_created - (:per_family - 1 - i) * s.gap AS created_at
    FROM shaped s, generate_series(0, :per_family - 1) i
)
SELECT value,
       encode(sha256(convert_to(value, 'UTF8')), 'hex') AS token_hash,
       family_id, user_id, dead, revoked, i, created_at,
       created_at + :ttl AS expires_at,
       CASE WHEN i < :per_family - 1 THEN created_at + gap END AS used_at,
       CASE WHEN revoked THEN last_created + (LEAST(:now - last_created, :ttl) * r_revoke)::bigint END AS revoked_at
FROM token;

-- In the order the service would have written them: the heap interleaves dead and
-- live families as real traffic does.
INSERT INTO refresh_tokens (token_hash, family_id, user_id, client_id, scope, created_at,
                            expires_at, used_at, revoked_at)
SELECT token_hash, family_id, user_id, :'client', 'api.read', created_at, expires_at,
       used_at, revoked_at
FROM bench_token ORDER BY created_at;

-- The refresh load's sessions: current tokens of live, unrevoked families.
\o :sessions_file
SELECT value FROM bench_token
WHERE NOT dead AND NOT revoked AND used_at IS NULL
ORDER BY family_id LIMIT :sessions;
\o
COMMIT;
