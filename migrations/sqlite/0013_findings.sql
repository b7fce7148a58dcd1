-- Stored findings (SQLite dialect): what each scanned image's newest inventory matched, kept
-- so that reading an image's vulnerabilities, the images one advisory affects and the
-- registry-wide summary are index lookups rather than a match on every read. Every row goes
-- with its manifest and its repository.
--
-- `vulnerability_summaries`: one row per matched image (a manifest with a successful scan):
-- the scan matched and the count of its findings by severity, as of `matched_at` (when they
-- last changed). No row: never scanned successfully (or not matched since this table exists).
CREATE TABLE vulnerability_summaries (
    manifest_id   INTEGER NOT NULL PRIMARY KEY REFERENCES manifests (id) ON DELETE CASCADE,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest        TEXT    NOT NULL,
    scan_id       INTEGER NOT NULL,
    critical      INTEGER NOT NULL,
    high          INTEGER NOT NULL,
    medium        INTEGER NOT NULL,
    low           INTEGER NOT NULL,
    unknown       INTEGER NOT NULL,
    matched_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX vulnerability_summaries_by_danger
    ON vulnerability_summaries (critical, high, medium, low, unknown, manifest_id);
CREATE INDEX vulnerability_summaries_by_scan ON vulnerability_summaries (scan_id);

-- The image manifests a matched image's inventory covers: itself, or an index's children.
-- A child pulled by digest finds here that its index was scanned.
CREATE TABLE finding_children (
    manifest_id   INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    child_digest  TEXT    NOT NULL,
    PRIMARY KEY (manifest_id, child_digest)
) STRICT, WITHOUT ROWID;
CREATE INDEX finding_children_by_child ON finding_children (repository_id, child_digest);

-- One finding: an advisory affecting a package (for Debian the source package) installed in
-- `child_digest` (the image itself, or a child of the index) of image `manifest_id`.
-- `first_seen` is when it was first matched, `last_seen` when it was last confirmed.
CREATE TABLE findings (
    manifest_id       INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    repository_id     INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    child_digest      TEXT    NOT NULL,
    advisory_id       TEXT    NOT NULL,
    package           TEXT    NOT NULL,
    installed_version TEXT    NOT NULL,
    fixed_version     TEXT,
    severity          TEXT    NOT NULL,
    layer             TEXT    NOT NULL,
    os                TEXT,
    architecture      TEXT,
    variant           TEXT,
    first_seen        INTEGER NOT NULL,
    last_seen         INTEGER NOT NULL,
    PRIMARY KEY (manifest_id, child_digest, advisory_id, package, installed_version)
) STRICT, WITHOUT ROWID;
CREATE INDEX findings_by_child ON findings (repository_id, child_digest);
CREATE INDEX findings_by_advisory ON findings (advisory_id, manifest_id);

-- What changed in an image's findings: `new` when a finding appeared, `resolved` when it
-- went (a rescan without the package, an advisory that no longer affects it).
CREATE TABLE finding_changes (
    id                INTEGER PRIMARY KEY,
    manifest_id       INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    repository_id     INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    child_digest      TEXT    NOT NULL,
    advisory_id       TEXT    NOT NULL,
    package           TEXT    NOT NULL,
    installed_version TEXT    NOT NULL,
    kind              TEXT    NOT NULL CHECK (kind IN ('new', 'resolved')),
    changed_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX finding_changes_by_image ON finding_changes (manifest_id, id);
CREATE INDEX finding_changes_by_child ON finding_changes (repository_id, child_digest, id);

-- The other ids an advisory names (CVE ids of a distribution's advisory), so that a CVE id
-- finds the advisories about it. Kept where advisories are stored.
CREATE TABLE advisory_aliases (
    alias       TEXT NOT NULL,
    advisory_id TEXT NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    PRIMARY KEY (alias, advisory_id)
) STRICT, WITHOUT ROWID;
INSERT OR IGNORE INTO advisory_aliases (alias, advisory_id)
    SELECT j.value, a.id FROM advisories a, json_each(a.aliases) j WHERE j.type = 'text';
