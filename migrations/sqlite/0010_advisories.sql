-- Advisories imported from OSV records (SQLite dialect), one row per record id, and the
-- packages each affects, looked up by (ecosystem, package) when inventories are matched.
-- `modified` is the record's own time, normalised to UTC with nanoseconds
-- (`2024-05-01T00:00:00.000000000Z`) so that text order is time order: an import replaces a
-- record only with a newer one. `aliases`, `ranges` and `versions` are JSON arrays as OSV
-- writes them; `severity` is critical, high, medium, low or unknown.
CREATE TABLE advisories (
    id          TEXT    PRIMARY KEY,
    aliases     TEXT    NOT NULL,
    summary     TEXT,
    severity    TEXT    NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low', 'unknown')),
    published   TEXT,
    modified    TEXT    NOT NULL,
    imported_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE advisory_packages (
    advisory_id TEXT    NOT NULL REFERENCES advisories (id) ON DELETE CASCADE,
    entry_index INTEGER NOT NULL,
    ecosystem   TEXT    NOT NULL,
    package     TEXT    NOT NULL,
    purl        TEXT,
    ranges      TEXT    NOT NULL,
    versions    TEXT    NOT NULL,
    PRIMARY KEY (advisory_id, entry_index)
) STRICT, WITHOUT ROWID;

CREATE INDEX advisory_packages_by_package ON advisory_packages (ecosystem, package);
