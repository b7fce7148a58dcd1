-- Quarantine (PostgreSQL dialect): a manifest of a repository held back from pulls, with
-- why, by whom and since when. `source` is `manual` (the API) or `policy` (a scanning
-- policy). A release deletes the row (the audit log keeps the history); the row goes with
-- its manifest and its repository. `digest` repeats the manifest's, so that the manifest GET
-- can look up an index's quarantined children by (repository, digest) without another join.
CREATE TABLE quarantines (
    manifest_id    BIGINT NOT NULL PRIMARY KEY REFERENCES manifests (id) ON DELETE CASCADE,
    repository_id  BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest         TEXT COLLATE "C" NOT NULL,
    reason         TEXT NOT NULL,
    source         TEXT NOT NULL CHECK (source IN ('manual', 'policy')),
    quarantined_by TEXT NOT NULL,
    quarantined_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX quarantines_by_digest ON quarantines (repository_id, digest);
