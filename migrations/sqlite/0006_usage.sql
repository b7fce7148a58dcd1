-- Usage per repository and day (days since the unix epoch, UTC), added by each flush of the
-- in-memory counters as one upsert per (repository, day): manifest GETs (pulls), manifest
-- HEADs (version checks, counted apart), manifest PUTs (pushes) and blob bytes served.
-- Replicas flush increments, so their counts add up.
CREATE TABLE repository_usage (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    day           INTEGER NOT NULL,
    pulls         INTEGER NOT NULL DEFAULT 0,
    heads         INTEGER NOT NULL DEFAULT 0,
    pushes        INTEGER NOT NULL DEFAULT 0,
    bytes_out     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repository_id, day)
) STRICT, WITHOUT ROWID;
-- Registry-wide windows (totals, popular) read by day first.
CREATE INDEX repository_usage_by_day ON repository_usage (day, repository_id);

-- Pulls by tag and day, for the popular tags.
CREATE TABLE tag_usage (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT    NOT NULL,
    day           INTEGER NOT NULL,
    pulls         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repository_id, tag, day)
) STRICT, WITHOUT ROWID;
CREATE INDEX tag_usage_by_day ON tag_usage (day, repository_id, tag);

-- Pulls and pushes by who made them (the identity's stable subject: `anonymous`,
-- `user:<id>`, `token:<id>`; `name` is how it was last shown) per repository and day.
CREATE TABLE subject_usage (
    subject       TEXT NOT NULL,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    day           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    pulls         INTEGER NOT NULL DEFAULT 0,
    pushes        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, repository_id, day)
) STRICT, WITHOUT ROWID;
CREATE INDEX subject_usage_by_day ON subject_usage (day, subject);
