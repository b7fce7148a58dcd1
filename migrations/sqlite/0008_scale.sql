-- Storage history for the trends: recorded at the first flush of each UTC day (days since
-- the unix epoch). The registry's physical bytes (every stored blob once) per day ...
CREATE TABLE registry_storage (
    day   INTEGER NOT NULL PRIMARY KEY,
    bytes INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- ... and each repository's deduplicated bytes (each blob its manifests need once) that day,
-- written in the same transaction, so their days are the registry's.
CREATE TABLE repository_storage (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    day           INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    PRIMARY KEY (repository_id, day)
) STRICT, WITHOUT ROWID;

-- The options a queued collection was asked for, used when a worker runs it (NULL: the
-- configuration's gc.grace_secs / gc.untagged).
ALTER TABLE gc_runs ADD COLUMN grace_secs INTEGER;
ALTER TABLE gc_runs ADD COLUMN remove_untagged INTEGER;
