-- Berth metadata index (SQLite dialect). Times are unix seconds.

CREATE TABLE repositories (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    push_count   INTEGER NOT NULL DEFAULT 0,
    pull_count   INTEGER NOT NULL DEFAULT 0,
    last_push_at INTEGER,
    last_pull_at INTEGER
) STRICT;

-- Verified content in the blob store, shared by every repository that links it.
CREATE TABLE blobs (
    digest     TEXT    PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- A blob is served from a repository only through a link (repository isolation).
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL REFERENCES blobs (digest),
    linked_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX repository_blobs_by_digest ON repository_blobs (digest);

CREATE TABLE manifests (
    id            INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL,
    media_type    TEXT    NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    config_digest TEXT,
    os            TEXT,
    architecture  TEXT,
    variant       TEXT,
    annotations   TEXT,
    size          INTEGER NOT NULL,
    total_size    INTEGER NOT NULL,
    payload       BLOB    NOT NULL,
    pushed_at     INTEGER NOT NULL,
    last_pulled_at INTEGER,
    UNIQUE (repository_id, digest)
) STRICT;
CREATE INDEX manifests_by_subject ON manifests (repository_id, subject, digest)
    WHERE subject IS NOT NULL;

-- What a manifest needs: its config and layers ('blob'), or an index's children ('manifest').
CREATE TABLE manifest_references (
    manifest_id INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    digest      TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (manifest_id, digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX manifest_references_by_digest ON manifest_references (digest);

CREATE TABLE tags (
    repository_id  INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    manifest_id    INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    pushed_at      INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    last_pulled_at INTEGER,
    PRIMARY KEY (repository_id, name)
) STRICT, WITHOUT ROWID;
CREATE INDEX tags_by_manifest ON tags (manifest_id);
-- Tag listings are in the spec's lexical order: case-insensitive, then exact bytes.
CREATE INDEX tags_listing ON tags (repository_id, lower(name), name);

CREATE TABLE uploads (
    id            TEXT    PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    size          INTEGER NOT NULL DEFAULT 0,
    started_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The staged objects of an upload, in byte order.
CREATE TABLE upload_parts (
    upload_id  TEXT    NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    start      INTEGER NOT NULL,
    size       INTEGER NOT NULL,
    object_key TEXT    NOT NULL,
    PRIMARY KEY (upload_id, start)
) STRICT, WITHOUT ROWID;
