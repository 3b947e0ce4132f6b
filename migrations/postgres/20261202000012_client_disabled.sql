-- A client the operator keeps but refuses: its namespace's OAuthClientPolicy no longer
-- allows it. The row (and the client's Secret) stay, so the client works again as soon
-- as it complies; until then the service treats it as unknown everywhere.
ALTER TABLE oauth_clients ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
