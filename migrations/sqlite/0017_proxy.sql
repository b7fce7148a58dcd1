-- Pull-through cache (SQLite dialect). `proxy_tags`: when a cached tag of a proxied
-- repository was last fetched or revalidated from its upstream (unix seconds); it is served
-- without asking the upstream until `tag_ttl` has passed. The row goes with its repository.
CREATE TABLE proxy_tags (
    repository_id INTEGER NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           TEXT    NOT NULL,
    checked_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, tag)
) STRICT, WITHOUT ROWID;
