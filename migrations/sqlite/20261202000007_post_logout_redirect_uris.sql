-- Where RP-Initiated Logout (/oauth/logout) may send the user back, compared exactly,
-- space-separated like redirect_uris.
ALTER TABLE oauth_clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '';
