-- Image scanning, the indexer's half (SQLite dialect).
--
-- `scan_layers`: what one layer blob says about installed software, keyed by the layer's
-- digest and the indexer version that read it, so a layer shared by many images is read
-- once and a known layer never again. `inventory` is the layer's index as JSON (package
-- databases by path, whiteouts, opaque directories, notes); `error` says why the layer could
-- not be read (a truncated or corrupt archive), `inventory` is then NULL.
CREATE TABLE scan_layers (
    digest          TEXT    NOT NULL,
    indexer_version INTEGER NOT NULL,
    inventory       TEXT,
    error           TEXT,
    indexed_at      INTEGER NOT NULL,
    PRIMARY KEY (digest, indexer_version)
) STRICT, WITHOUT ROWID;

-- One scan of an image (a manifest of a repository): when, by which indexer version, with
-- what outcome. `status` is `ok` or `error`.
CREATE TABLE scans (
    id              INTEGER PRIMARY KEY,
    repository_id   INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    manifest_digest TEXT    NOT NULL,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER NOT NULL,
    indexer_version INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('ok', 'error')),
    error           TEXT,
    packages        INTEGER NOT NULL DEFAULT 0,
    layers_read     INTEGER NOT NULL DEFAULT 0,
    duration_ms     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX scans_by_image ON scans (repository_id, manifest_digest, id);

-- The merged inventory a successful scan found: one row per package of the image (for an
-- index, of each scanned child, which `child_digest` and the platform name). Matching reads
-- (ecosystem, source_name, source_version).
CREATE TABLE scan_packages (
    scan_id        INTEGER NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,
    child_digest   TEXT    NOT NULL,
    os             TEXT,
    architecture   TEXT,
    variant        TEXT,
    ecosystem      TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    source_name    TEXT    NOT NULL,
    source_version TEXT    NOT NULL,
    purl           TEXT    NOT NULL,
    layer          TEXT    NOT NULL,
    PRIMARY KEY (scan_id, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX scan_packages_by_source ON scan_packages (ecosystem, source_name);
