-- PostgreSQL notifies service replicas of signing-key changes from a trigger (see the
-- postgres migration of the same number). SQLite has one process and no notifications:
-- nothing to do, kept so both backends share one migration history.
SELECT 1;
