-- Tell every service replica at once when the published signing keys change (a key
-- published, activated, retired, deleted or revoked in an emergency): the service LISTENs
-- on this channel and reloads its keys instead of waiting for its reload interval.
-- Row-level, and UPDATE only when something changed, so idempotent rewrites (the
-- operator's upserts, ON CONFLICT DO NOTHING) stay silent. Notifications with the same
-- payload are merged by PostgreSQL within a transaction and delivered at commit.
CREATE FUNCTION latchkey_signing_keys_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('latchkey_signing_keys', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER signing_keys_inserted_or_deleted
    AFTER INSERT OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION latchkey_signing_keys_changed();

CREATE TRIGGER signing_keys_updated
    AFTER UPDATE ON signing_keys
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION latchkey_signing_keys_changed();
