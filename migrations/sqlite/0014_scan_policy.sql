-- Scanning policy, vulnerability allowlist and VEX statements (SQLite dialect).
--
-- `scan_policies`: the scanning policy of a namespace or a repository (`scope` is its name).
-- Each setting NULL = inherited: a repository's over its namespace's over the registry's
-- default. Booleans are 0/1; `block_severity` names the lowest severity that blocks.
CREATE TABLE scan_policies (
    kind            TEXT    NOT NULL CHECK (kind IN ('namespace', 'repository')),
    scope           TEXT    NOT NULL,
    scan_on_push    INTEGER CHECK (scan_on_push IN (0, 1)),
    block_severity  TEXT    CHECK (block_severity IN ('critical', 'high', 'medium', 'low', 'unknown')),
    block_unscanned INTEGER CHECK (block_unscanned IN (0, 1)),
    only_fixable    INTEGER CHECK (only_fixable IN (0, 1)),
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (kind, scope)
) STRICT, WITHOUT ROWID;

-- Accepted vulnerabilities: each entry applies to the whole registry (`scope_value` empty),
-- a namespace, a repository or one image digest, until `expires_at` (NULL = never).
-- `expiry_handled` marks an expired entry whose images the sweep has re-judged.
CREATE TABLE vulnerability_allowlist (
    id             INTEGER PRIMARY KEY,
    scope_kind     TEXT    NOT NULL CHECK (scope_kind IN ('registry', 'namespace', 'repository', 'digest')),
    scope_value    TEXT    NOT NULL,
    vulnerability  TEXT    NOT NULL,
    expires_at     INTEGER,
    reason         TEXT    NOT NULL,
    author         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expiry_handled INTEGER NOT NULL DEFAULT 0 CHECK (expiry_handled IN (0, 1))
) STRICT;
CREATE INDEX vulnerability_allowlist_by_scope ON vulnerability_allowlist (scope_kind, scope_value);
CREATE INDEX vulnerability_allowlist_by_expiry ON vulnerability_allowlist (expiry_handled, expires_at);

-- The statements of OpenVEX documents pushed as referrers: one row per statement, gone with
-- the referrer's manifest. `subject_digest` is the image the document speaks of.
CREATE TABLE vex_statements (
    manifest_id    INTEGER NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL,
    repository_id  INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    subject_digest TEXT    NOT NULL,
    vulnerability  TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    justification  TEXT,
    PRIMARY KEY (manifest_id, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX vex_statements_by_subject ON vex_statements (repository_id, subject_digest);
