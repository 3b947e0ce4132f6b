-- Roles of a client, set only by the CLI and the admin API (the operator never does):
-- admin: its client-credentials tokens, with the latchkey:admin scope, may use the
--   admin API. Admin rights belong to this mark, never to a scope a user consents to.
-- resource_server: it may introspect every access token, not only those issued to it
--   or naming it in their audience (RFC 7662 §4).
ALTER TABLE oauth_clients ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE oauth_clients ADD COLUMN resource_server BOOLEAN NOT NULL DEFAULT FALSE;
-- Clients that held latchkey:admin through the CLI or the admin API before the mark
-- existed keep their power if they can use it (client credentials).
UPDATE oauth_clients SET admin = TRUE
 WHERE managed_by = 'api'
   AND (' ' || scopes || ' ') LIKE '% latchkey:admin %'
   AND (' ' || grant_types || ' ') LIKE '% client_credentials %';
