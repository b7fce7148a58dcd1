-- Storage lifecycle (SQLite dialect): the job queue, garbage-collection runs and fences,
-- cleanup policies and tag immutability. Times are unix seconds.

-- The work queue every replica drains. A job is leased (owner, until) before it runs; a lease
-- that expired is taken over. `dedupe` names a queued job that must not be queued twice (a
-- review of one repository); it is cleared when the job is leased, so that events during the
-- run queue the next review. Finished jobs stay as history.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL DEFAULT '',
    dedupe      TEXT    UNIQUE,
    state       TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done', 'failed')),
    run_after   INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
) STRICT;
CREATE INDEX jobs_due ON jobs (state, run_after);

-- One row per garbage collection (or dry run), with what it removed.
CREATE TABLE gc_runs (
    id                INTEGER PRIMARY KEY,
    trigger           TEXT    NOT NULL,
    dry_run           INTEGER NOT NULL,
    state             TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    started_at        INTEGER,
    finished_at       INTEGER,
    manifests_deleted INTEGER NOT NULL DEFAULT 0,
    links_deleted     INTEGER NOT NULL DEFAULT 0,
    blobs_deleted     INTEGER NOT NULL DEFAULT 0,
    uploads_deleted   INTEGER NOT NULL DEFAULT 0,
    orphans_deleted   INTEGER NOT NULL DEFAULT 0,
    bytes_deleted     INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    report            TEXT
) STRICT;

-- Fences between blob writers and the collector, one row per digest while either is at work.
-- A writer counts itself in (`writers`) before it writes the object and out when the row is
-- recorded; the collector claims a digest (`deleting`) only when no writer is in, and a writer
-- waits while it is claimed. The collector deletes the object only under its claim.
CREATE TABLE blob_fences (
    digest     TEXT    PRIMARY KEY,
    writers    INTEGER NOT NULL DEFAULT 0,
    deleting   INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Cleanup policies: for one repository (`pattern` is its name) or for every repository whose
-- name matches `pattern` (a regular expression). `rules` is the policy as saved (JSON).
CREATE TABLE cleanup_policies (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    pattern     TEXT    NOT NULL,
    enabled     INTEGER NOT NULL,
    cadence     TEXT    NOT NULL,
    rules       TEXT    NOT NULL,
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- Tag immutability and protection per repository; patterns are JSON arrays of regexes.
CREATE TABLE repository_settings (
    repository TEXT    PRIMARY KEY,
    tag_mutability TEXT NOT NULL DEFAULT 'mutable'
        CHECK (tag_mutability IN ('mutable', 'immutable', 'immutable_with_exclusion')),
    mutable_patterns   TEXT NOT NULL DEFAULT '[]',
    protected_patterns TEXT NOT NULL DEFAULT '[]',
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX blobs_by_created ON blobs (created_at);
CREATE INDEX uploads_by_updated ON uploads (updated_at);
