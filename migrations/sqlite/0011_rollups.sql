-- Rollups, so that registry-wide figures read a few rows instead of millions.

-- Usage per day over the whole registry, added by the same flush as `repository_usage` (its
-- sum per day). A deleted repository's usage stays in the registry's history.
CREATE TABLE registry_usage (
    day       INTEGER NOT NULL PRIMARY KEY,
    pulls     INTEGER NOT NULL DEFAULT 0,
    heads     INTEGER NOT NULL DEFAULT 0,
    pushes    INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
INSERT INTO registry_usage (day, pulls, heads, pushes, bytes_out)
    SELECT day, SUM(pulls), SUM(heads), SUM(pushes), SUM(bytes_out)
    FROM repository_usage GROUP BY day;

-- Pulls by tag ever (the sum of `tag_usage` over all days), added by the same flush. A tag's
-- pulls in any window are at most these, which bounds the search for the most pulled tags.
CREATE TABLE tag_pulls (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT    NOT NULL,
    pulls         INTEGER NOT NULL,
    PRIMARY KEY (repository_id, tag)
) STRICT, WITHOUT ROWID;
CREATE INDEX tag_pulls_by_pulls ON tag_pulls (pulls, repository_id, tag);
INSERT INTO tag_pulls (repository_id, tag, pulls)
    SELECT repository_id, tag, SUM(pulls) FROM tag_usage GROUP BY repository_id, tag;

-- The same bound for repositories: `pull_count` counts every pull ever.
CREATE INDEX repositories_by_pulls ON repositories (pull_count, id);

-- Manifests and tags per repository, kept by triggers, so that every path that adds or
-- removes one (pushes, deletions, cleanup, a repository's cascade) keeps them true.
ALTER TABLE repositories ADD COLUMN manifest_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN tag_count INTEGER NOT NULL DEFAULT 0;
UPDATE repositories SET
    manifest_count = (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = repositories.id),
    tag_count = (SELECT COUNT(*) FROM tags t WHERE t.repository_id = repositories.id);
CREATE TRIGGER manifest_counted AFTER INSERT ON manifests BEGIN
    UPDATE repositories SET manifest_count = manifest_count + 1 WHERE id = NEW.repository_id;
END;
CREATE TRIGGER manifest_uncounted AFTER DELETE ON manifests BEGIN
    UPDATE repositories SET manifest_count = manifest_count - 1 WHERE id = OLD.repository_id;
END;
CREATE TRIGGER tag_counted AFTER INSERT ON tags BEGIN
    UPDATE repositories SET tag_count = tag_count + 1 WHERE id = NEW.repository_id;
END;
CREATE TRIGGER tag_uncounted AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tag_count = tag_count - 1 WHERE id = OLD.repository_id;
END;

-- Stored blobs and their bytes, kept by triggers (one row here; PostgreSQL spreads the
-- count over 16 rows so that concurrent pushes do not queue on one).
CREATE TABLE blob_totals (
    shard INTEGER NOT NULL PRIMARY KEY,
    blobs INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
INSERT INTO blob_totals (shard, blobs, bytes)
    SELECT 0, COUNT(*), COALESCE(SUM(size), 0) FROM blobs;
CREATE TRIGGER blob_counted AFTER INSERT ON blobs BEGIN
    UPDATE blob_totals SET blobs = blobs + 1, bytes = bytes + NEW.size WHERE shard = 0;
END;
CREATE TRIGGER blob_uncounted AFTER DELETE ON blobs BEGIN
    UPDATE blob_totals SET blobs = blobs - 1, bytes = bytes - OLD.size WHERE shard = 0;
END;
