-- Quotas per namespace (SQLite dialect): the first component of repository names, as access
-- control counts it. NULL is no limit. `storage_bytes` bounds the deduplicated bytes of the
-- namespace (every blob linked into one of its repositories and every manifest, each once);
-- `repositories` the repositories it holds; `warn_percent` is where the warning starts.
-- `counted_bytes` is the usage as last counted plus the blobs and manifests admitted since:
-- deletes and collections lower the usage, not it, so a blob that fits under it fits under
-- the limit and needs no count of the usage.
CREATE TABLE namespace_quotas (
    namespace     TEXT    PRIMARY KEY,
    storage_bytes INTEGER CHECK (storage_bytes IS NULL OR storage_bytes > 0),
    repositories  INTEGER CHECK (repositories IS NULL OR repositories > 0),
    warn_percent  INTEGER NOT NULL DEFAULT 80 CHECK (warn_percent BETWEEN 1 AND 100),
    counted_bytes INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
