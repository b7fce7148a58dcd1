-- Replication (SQLite dialect). `replication_rules`: one rule by name; `definition` is the
-- checked rule as JSON (read back through the registry's parser), `trigger_kind` and
-- `next_run_at` are copied out of it so that pushes and the cron tick find their rules by
-- index. `replication_executions`: one run of a rule, with its counters, its outcome and
-- its log (lines appended as it goes). `replication_tasks`: what one run did per source
-- reference (copied, skipped, failed) and why.
CREATE TABLE replication_rules (
    name         TEXT    PRIMARY KEY,
    definition   TEXT    NOT NULL,
    trigger_kind TEXT    NOT NULL CHECK (trigger_kind IN ('manual', 'on_push', 'cron')),
    next_run_at  INTEGER,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX replication_rules_trigger ON replication_rules (trigger_kind, next_run_at);

CREATE TABLE replication_executions (
    id                 INTEGER PRIMARY KEY,
    rule               TEXT    NOT NULL,
    trigger_kind       TEXT    NOT NULL,
    state              TEXT    NOT NULL DEFAULT 'queued'
                       CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    created_at         INTEGER NOT NULL,
    started_at         INTEGER,
    finished_at        INTEGER,
    attempts           INTEGER NOT NULL DEFAULT 0,
    bytes_moved        INTEGER NOT NULL DEFAULT 0,
    blobs_copied       INTEGER NOT NULL DEFAULT 0,
    blobs_skipped      INTEGER NOT NULL DEFAULT 0,
    blobs_mounted      INTEGER NOT NULL DEFAULT 0,
    manifests_copied   INTEGER NOT NULL DEFAULT 0,
    manifests_skipped  INTEGER NOT NULL DEFAULT 0,
    failed             INTEGER NOT NULL DEFAULT 0,
    error              TEXT,
    log                TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX replication_executions_rule ON replication_executions (rule, id);

CREATE TABLE replication_tasks (
    id            INTEGER PRIMARY KEY,
    execution_id  INTEGER NOT NULL REFERENCES replication_executions (id) ON DELETE CASCADE,
    source        TEXT    NOT NULL,
    destination   TEXT    NOT NULL,
    digest        TEXT,
    state         TEXT    NOT NULL CHECK (state IN ('copied', 'skipped', 'failed')),
    bytes         INTEGER NOT NULL DEFAULT 0,
    message       TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX replication_tasks_execution ON replication_tasks (execution_id, id);
