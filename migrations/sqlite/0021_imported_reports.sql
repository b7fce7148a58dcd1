-- Reports of other scanners (SQLite dialect): a Trivy or Grype JSON report imported for an
-- image, kept as a scan of its own kind beside Berth's. `child_digest` is the image manifest
-- the report is about (the image itself, or the child of the index it was imported for);
-- the counts by severity are the report's, as imported. Every import is kept (the history);
-- an image's view of one scanner reads its newest report per child.
CREATE TABLE imported_reports (
    id              INTEGER PRIMARY KEY,
    manifest_id     INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    repository_id   INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    child_digest    TEXT    NOT NULL,
    os              TEXT,
    architecture    TEXT,
    variant         TEXT,
    scanner         TEXT    NOT NULL CHECK (scanner IN ('trivy', 'grype')),
    scanner_version TEXT,
    imported_at     INTEGER NOT NULL,
    imported_by     TEXT    NOT NULL,
    critical        INTEGER NOT NULL,
    high            INTEGER NOT NULL,
    medium          INTEGER NOT NULL,
    low             INTEGER NOT NULL,
    unknown         INTEGER NOT NULL
) STRICT;
CREATE INDEX imported_reports_by_image ON imported_reports (manifest_id, scanner, id);

-- The findings of one imported report, in the report's order. `layer` is the layer blob's
-- digest (mapped from the report's DiffID through the image's config), '' when the report
-- names none.
CREATE TABLE imported_findings (
    report_id         INTEGER NOT NULL REFERENCES imported_reports (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    advisory_id       TEXT    NOT NULL,
    aliases           TEXT    NOT NULL,
    severity          TEXT    NOT NULL,
    package           TEXT    NOT NULL,
    installed_version TEXT    NOT NULL,
    fixed_version     TEXT,
    layer             TEXT    NOT NULL,
    PRIMARY KEY (report_id, seq)
) STRICT, WITHOUT ROWID;
