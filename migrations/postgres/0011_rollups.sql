-- Rollups, so that registry-wide figures read a few rows instead of millions.

-- Usage per day over the whole registry, added by the same flush as `repository_usage` (its
-- sum per day). A deleted repository's usage stays in the registry's history.
CREATE TABLE registry_usage (
    day       BIGINT NOT NULL PRIMARY KEY,
    pulls     BIGINT NOT NULL DEFAULT 0,
    heads     BIGINT NOT NULL DEFAULT 0,
    pushes    BIGINT NOT NULL DEFAULT 0,
    bytes_out BIGINT NOT NULL DEFAULT 0
);
INSERT INTO registry_usage (day, pulls, heads, pushes, bytes_out)
    SELECT day, SUM(pulls), SUM(heads), SUM(pushes), SUM(bytes_out)
    FROM repository_usage GROUP BY day;

-- Pulls by tag ever (the sum of `tag_usage` over all days), added by the same flush. A tag's
-- pulls in any window are at most these, which bounds the search for the most pulled tags.
CREATE TABLE tag_pulls (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT COLLATE "C" NOT NULL,
    pulls         BIGINT NOT NULL,
    PRIMARY KEY (repository_id, tag)
);
CREATE INDEX tag_pulls_by_pulls ON tag_pulls (pulls, repository_id, tag);
INSERT INTO tag_pulls (repository_id, tag, pulls)
    SELECT repository_id, tag, SUM(pulls) FROM tag_usage GROUP BY repository_id, tag;

-- The same bound for repositories: `pull_count` counts every pull ever.
CREATE INDEX repositories_by_pulls ON repositories (pull_count, id);

-- Manifests and tags per repository, kept by triggers, so that every path that adds or
-- removes one (pushes, deletions, cleanup, a repository's cascade) keeps them true.
ALTER TABLE repositories ADD COLUMN manifest_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN tag_count BIGINT NOT NULL DEFAULT 0;
UPDATE repositories SET
    manifest_count = (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = repositories.id),
    tag_count = (SELECT COUNT(*) FROM tags t WHERE t.repository_id = repositories.id);
CREATE FUNCTION count_in_repository() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'manifests' THEN
        IF TG_OP = 'INSERT' THEN
            UPDATE repositories SET manifest_count = manifest_count + 1 WHERE id = NEW.repository_id;
        ELSE
            UPDATE repositories SET manifest_count = manifest_count - 1 WHERE id = OLD.repository_id;
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        UPDATE repositories SET tag_count = tag_count + 1 WHERE id = NEW.repository_id;
    ELSE
        UPDATE repositories SET tag_count = tag_count - 1 WHERE id = OLD.repository_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER manifest_counted AFTER INSERT OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION count_in_repository();
CREATE TRIGGER tag_counted AFTER INSERT OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION count_in_repository();

-- Stored blobs and their bytes, kept by triggers, spread over 16 rows by digest so that
-- concurrent pushes do not queue on one row.
CREATE TABLE blob_totals (
    shard BIGINT NOT NULL PRIMARY KEY,
    blobs BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
INSERT INTO blob_totals (shard, blobs, bytes)
    SELECT s, 0, 0 FROM generate_series(0, 15) AS s;
UPDATE blob_totals SET blobs = c.blobs, bytes = c.bytes
    FROM (SELECT get_byte(decode(substr(digest, length(digest) - 1), 'hex'), 0) % 16 AS shard,
                 COUNT(*) AS blobs, COALESCE(SUM(size), 0) AS bytes
          FROM blobs GROUP BY 1) c
    WHERE blob_totals.shard = c.shard;
CREATE FUNCTION count_blob() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE blob_totals SET blobs = blobs + 1, bytes = bytes + NEW.size
        WHERE shard = get_byte(decode(substr(NEW.digest, length(NEW.digest) - 1), 'hex'), 0) % 16;
    ELSE
        UPDATE blob_totals SET blobs = blobs - 1, bytes = bytes - OLD.size
        WHERE shard = get_byte(decode(substr(OLD.digest, length(OLD.digest) - 1), 'hex'), 0) % 16;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER blob_counted AFTER INSERT OR DELETE ON blobs
    FOR EACH ROW EXECUTE FUNCTION count_blob();
