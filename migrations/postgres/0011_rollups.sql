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
-- Statement-level triggers over transition tables: one update per repository per statement,
-- however many rows it adds or removes (updating one row once per row in a transaction makes
-- PostgreSQL walk ever longer version chains).
CREATE FUNCTION count_manifests() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE repositories r SET manifest_count = r.manifest_count + c.n
        FROM (SELECT repository_id, COUNT(*) AS n FROM changed GROUP BY repository_id) c
        WHERE r.id = c.repository_id;
    ELSE
        UPDATE repositories r SET manifest_count = r.manifest_count - c.n
        FROM (SELECT repository_id, COUNT(*) AS n FROM changed GROUP BY repository_id) c
        WHERE r.id = c.repository_id;
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION count_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE repositories r SET tag_count = r.tag_count + c.n
        FROM (SELECT repository_id, COUNT(*) AS n FROM changed GROUP BY repository_id) c
        WHERE r.id = c.repository_id;
    ELSE
        UPDATE repositories r SET tag_count = r.tag_count - c.n
        FROM (SELECT repository_id, COUNT(*) AS n FROM changed GROUP BY repository_id) c
        WHERE r.id = c.repository_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER manifest_counted AFTER INSERT ON manifests
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION count_manifests();
CREATE TRIGGER manifest_uncounted AFTER DELETE ON manifests
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION count_manifests();
CREATE TRIGGER tag_counted AFTER INSERT ON tags
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION count_tags();
CREATE TRIGGER tag_uncounted AFTER DELETE ON tags
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION count_tags();

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
CREATE FUNCTION count_blobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE blob_totals t
    SET blobs = t.blobs + CASE WHEN TG_OP = 'INSERT' THEN c.n ELSE -c.n END,
        bytes = t.bytes + CASE WHEN TG_OP = 'INSERT' THEN c.bytes ELSE -c.bytes END
    FROM (SELECT get_byte(decode(substr(digest, length(digest) - 1), 'hex'), 0) % 16 AS shard,
                 COUNT(*) AS n, SUM(size) AS bytes
          FROM changed GROUP BY 1) c
    WHERE t.shard = c.shard;
    RETURN NULL;
END $$;
CREATE TRIGGER blob_counted AFTER INSERT ON blobs
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION count_blobs();
CREATE TRIGGER blob_uncounted AFTER DELETE ON blobs
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION count_blobs();
